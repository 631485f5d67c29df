/*
 * init.c - `patto init`: a node's data directory with its keys, its config file
 * (node/CONFIG.md) and the built-in schema, and the member entry for the network admin.
 *
 * The steps, in order: read the options, check their values, refuse a directory that already
 * holds a node or lies in an admin directory, then write the identity key, the schema and the
 * config (last: a directory with pattod.conf is a finished init) and print the entry. A
 * failure half-way removes what this run wrote.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SCHEMA_FILE "schema.json"

/* What the command line asks for; strings borrowed from argv. */
typedef struct init_args {
    const char *data, *org, *role, *listen, *advertise, *admin_pub, *name, *schema;
    unsigned role_num;
    uint8_t pin[PROTO_ORIGIN_LEN]; /* the network admin's key, from --admin-pub */
} init_args;

/* The files of the data directory, and what this run has made so far. */
typedef struct init_files {
    char key[4200], conf[4200], sch[4200];
    bool made_dir, wrote_key, wrote_schema;
} init_files;

static cli_err init_parse(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv, init_args *a)
{
    memset(a, 0, sizeof *a);
    const cli__opt opts[] = {
        { "org", &a->org, NULL },
        { "role", &a->role, NULL },
        { "listen", &a->listen, NULL },
        { "advertise", &a->advertise, NULL },
        { "admin-pub", &a->admin_pub, NULL },
        { "name", &a->name, NULL },
        { "schema", &a->schema, NULL },
    };
    const char *pos[1];
    size_t n;
    cli_err err
        = cli__parse(ctx, cmd, argc, argv, opts, sizeof opts / sizeof opts[0], pos, 0, 0, &n);
    if (err != CLI_OK)
        return err;
    a->data = ctx->dir;
    if (a->data == NULL || a->data[0] == '\0')
        return cli__usage(ctx, cmd, _("--dir DATA is required (or set PATTO_DIR)"));
    if (a->org == NULL || a->role == NULL || a->listen == NULL || a->admin_pub == NULL)
        return cli__usage(ctx, cmd, _("--org, --role, --listen and --admin-pub are required"));
    if (a->name == NULL)
        a->name = a->org;
    return CLI_OK;
}

/* The operator name goes into an INI value: inih would cut it at " ;" or " #" and trim it. */
static bool ini_safe(const char *s)
{
    size_t n = strlen(s);
    return n > 0 && s[0] != ' ' && s[n - 1] != ' ' && strchr(s, ';') == NULL
        && strchr(s, '#') == NULL;
}

static cli_err init_check(cli__ctx *ctx, init_args *a)
{
    if (!proto_org_valid(a->org, strlen(a->org)))
        return cli__fail(ctx, CLI_EINPUT,
            _("org '%s' is not an org id (1-32 of a-z 0-9 -, e.g. comune-latina)"), a->org);
    if ((a->role_num = proto_role_parse(a->role, strlen(a->role))) == 0)
        return cli__fail(ctx, CLI_EINPUT,
            _("role '%s' is not one of comune cpia cpi prefettura coop coord"), a->role);
    if (!proto_url_valid(a->listen, strlen(a->listen)))
        return cli__fail(ctx, CLI_EINPUT,
            _("listen URL '%s' is not tcp://HOST:PORT (e.g. tcp://10.0.0.5:7401)"), a->listen);
    if (a->advertise == NULL && proto_url_wildcard(a->listen, strlen(a->listen)))
        return cli__fail(ctx, CLI_EUSAGE,
            _("--listen %s binds every address of this machine, which the other members cannot "
              "dial: add --advertise tcp://HOST:PORT, the address they reach this node at"),
            a->listen);
    if (a->advertise != NULL && !proto_url_valid(a->advertise, strlen(a->advertise)))
        return cli__fail(ctx, CLI_EINPUT,
            _("advertise URL '%s' is not tcp://HOST:PORT (e.g. tcp://10.0.0.5:7401)"),
            a->advertise);
    if (a->advertise != NULL && proto_url_wildcard(a->advertise, strlen(a->advertise)))
        return cli__fail(ctx, CLI_EINPUT,
            _("--advertise %s binds every address: give the address the other members dial (e.g. "
              "tcp://10.0.0.5:7401)"),
            a->advertise);
    if (!proto_hex_decode(a->admin_pub, strlen(a->admin_pub), a->pin, PROTO_ORIGIN_LEN))
        return cli__fail(ctx, CLI_EINPUT,
            _("--admin-pub must be the 64 hex digits of the network admin's public key (the "
              "admin's admin.pub)"));
    if (!proto_text_valid(a->name, strlen(a->name), PROTO_TEXT_MAX))
        return cli__fail(ctx, CLI_EINPUT,
            _("--name must be 1-%d bytes of text without control characters, and not only spaces"),
            PROTO_TEXT_MAX);
    /* cli_main checked it as text; here it also goes into the config file. */
    if (ctx->operator_flag != NULL && !ini_safe(ctx->operator_flag))
        return cli__fail(ctx, CLI_EINPUT,
            _("--operator must be 1-%d characters without control characters, ';' or '#', and "
              "no spaces at either end"),
            CLI__OPERATOR_MAX);
    return CLI_OK;
}

/* Refuse a directory that holds a node already, or lies in a network admin directory. */
static cli_err init_refuse(cli__ctx *ctx, const init_args *a, init_files *f)
{
    cli_err err;
    if ((err = cli__path(ctx, f->key, sizeof f->key, a->data, CLI__NODE_KEY)) != CLI_OK
        || (err = cli__path(ctx, f->conf, sizeof f->conf, a->data, CLI__NODE_CONF)) != CLI_OK
        || (err = cli__path(ctx, f->sch, sizeof f->sch, a->data, SCHEMA_FILE)) != CLI_OK)
        return err;
    if (cli__exists(f->conf) || cli__exists(f->key))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s already holds a node (%s or %s); refusing to replace its keys"), a->data,
            CLI__NODE_CONF, CLI__NODE_KEY);
    if (cli__exists(f->sch))
        return cli__fail(ctx, CLI_EINPUT, _("%s already holds %s; use an empty or new directory"),
            a->data, SCHEMA_FILE);
    static const char *const admin_marks[] = { CLI__ADMIN_KEY };
    char admin[4200];
    const char *mark;
    if (cli__inside(a->data, admin_marks, 1, admin, sizeof admin, &mark))
        return cli__fail(ctx, CLI_EINPUT,
            _("%s is in the network admin directory %s (it holds %s): the admin key never enters a "
              "node; give the node a data directory outside it"),
            a->data, admin, mark);
    return CLI_OK;
}

static cli_err init_make_dir(cli__ctx *ctx, const char *data, init_files *f)
{
    if (mkdir(data, 0750) != 0) {
        if (errno == EEXIST)
            return CLI_OK;
        return cli__fail(ctx, CLI_EINPUT, _("cannot create %s: %s"), data, strerror(errno));
    }
    f->made_dir = true;
    /* Exactly 0750 whatever the umask: the node's group reads the socket, not the keys. */
    if (chmod(data, 0750) != 0)
        return cli__fail(
            ctx, CLI_EINPUT, _("cannot set the mode of %s: %s"), data, strerror(errno));
    return CLI_OK;
}

/* A new identity, its seeds written to identity.key. *id owned: proto_identity_free. */
static cli_err init_write_key(cli__ctx *ctx, init_files *f, proto_identity **id)
{
    proto_err perr = proto_identity_new(NULL, id);
    if (perr != PROTO_OK)
        return cli__fail(
            ctx, CLI_EINTERNAL, _("cannot make the node's keys: %s"), proto_strerror(perr));
    uint8_t seeds[2 * PROTO_SEED_LEN];
    proto_identity_seeds(*id, seeds, seeds + PROTO_SEED_LEN);
    cli_err err = cli__write_file(ctx, f->key, seeds, sizeof seeds, 0600, true);
    proto_wipe(seeds, sizeof seeds);
    f->wrote_key = err == CLI_OK;
    return err;
}

static cli_err init_write_schema(
    cli__ctx *ctx, init_files *f, const uint8_t *schema, size_t schema_len)
{
    cli_err err = schema != NULL
        ? cli__write_file(ctx, f->sch, schema, schema_len, 0644, true)
        : cli__write_file(ctx, f->sch, patto_default_schema, patto_default_schema_len, 0644, true);
    f->wrote_schema = err == CLI_OK;
    return err;
}

/* pattod.conf (node/CONFIG.md): every value is bounded, so the text fits a fixed buffer. */
static cli_err init_write_config(cli__ctx *ctx, const init_args *a, init_files *f)
{
    char pin_hex[2 * PROTO_ORIGIN_LEN + 1];
    proto_hex_encode(a->pin, PROTO_ORIGIN_LEN, pin_hex);
    const char *op = ctx->operator_flag;
    char config[2048];
    int len = snprintf(config, sizeof config,
        "; pattod configuration written by patto init (reference: node/CONFIG.md)\n"
        "[node]\n"
        "org = %s\n"
        "role = %s\n"
        "listen = %s\n"
        "%s%s%s"
        "%s%s%s"
        "\n"
        "[network]\n"
        "admin_pub = %s\n",
        a->org, a->role, a->listen, a->advertise != NULL ? "advertise = " : "",
        a->advertise != NULL ? a->advertise : "", a->advertise != NULL ? "\n" : "",
        op != NULL ? "operator = " : "", op != NULL ? op : "", op != NULL ? "\n" : "", pin_hex);
    if (len < 0 || (size_t)len >= sizeof config)
        return cli__fail(ctx, CLI_EINTERNAL, _("the config file does not fit its buffer"));
    return cli__write_file(ctx, f->conf, config, (size_t)len, 0640, true);
}

/* The member entry, JSON in both modes: it is meant to be saved for `patto network add`. */
static cli_err init_print_entry(cli__ctx *ctx, const init_args *a, const proto_identity *id)
{
    cli__member m = { .org = a->org,
        .name = a->name,
        .role = a->role_num,
        .url = a->advertise != NULL ? a->advertise : a->listen };
    memcpy(m.origin, proto_identity_origin(id), PROTO_ORIGIN_LEN);
    memcpy(m.box_pk, proto_identity_box_pk(id), PROTO_BOX_PK_LEN);
    json_object *entry = cli__entry_new(&m);
    if (entry == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    cli_err err = cli__json_print(ctx, entry);
    json_object_put(entry);
    return err;
}

static void init_undo(const init_files *f, const char *data)
{
    if (f->wrote_schema)
        unlink(f->sch);
    if (f->wrote_key)
        unlink(f->key);
    if (f->made_dir)
        rmdir(data);
}

cli_err cli__init(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    init_args a;
    init_files f = { .made_dir = false };
    cli_err err;
    if ((err = init_parse(ctx, cmd, argc, argv, &a)) != CLI_OK
        || (err = init_check(ctx, &a)) != CLI_OK || (err = init_refuse(ctx, &a, &f)) != CLI_OK)
        return err;
    uint8_t *schema = NULL;
    size_t schema_len = 0;
    uint8_t hash[PROTO_HASH_LEN];
    if (a.schema != NULL
        && (err = cli__schema_read(ctx, a.schema, &schema, &schema_len, hash)) != CLI_OK)
        return err;
    proto_identity *id = NULL;
    if (proto_init() != PROTO_OK) {
        err = cli__fail(ctx, CLI_EINTERNAL, _("cannot initialise the crypto library"));
        goto done;
    }
    if ((err = init_make_dir(ctx, a.data, &f)) != CLI_OK
        || (err = init_write_key(ctx, &f, &id)) != CLI_OK
        || (err = init_write_schema(ctx, &f, schema, schema_len)) != CLI_OK
        || (err = init_write_config(ctx, &a, &f)) != CLI_OK) {
        init_undo(&f, a.data);
        goto done;
    }
    /* The directory is complete from here on: keep it whatever happens to the output. */
    err = init_print_entry(ctx, &a, id);
done:
    free(schema);
    proto_identity_free(id);
    return err;
}
