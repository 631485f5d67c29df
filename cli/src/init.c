/*
 * init.c - `patto init`: a node's data directory with its keys, its config file
 * (node/CONFIG.md) and the built-in schema, and the member entry for the network admin.
 */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IDENTITY_KEY "identity.key"
#define CONFIG_FILE "pattod.conf"
#define SCHEMA_FILE "schema.json"

/* The operator name goes into an INI value: inih would cut it at " ;" or " #" and trim it. */
static bool valid_operator(const char *s)
{
    size_t n = strlen(s);
    if (!cli_valid_text(s, CLI__OPERATOR_MAX) || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    return strchr(s, ';') == NULL && strchr(s, '#') == NULL;
}

cli_err cli__init(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *org = NULL, *role = NULL, *listen = NULL, *admin_pub = NULL, *name = NULL,
               *schema = NULL;
    const cli__opt opts[] = {
        { "org", &org, NULL },
        { "role", &role, NULL },
        { "listen", &listen, NULL },
        { "admin-pub", &admin_pub, NULL },
        { "name", &name, NULL },
        { "schema", &schema, NULL },
    };
    const char *pos[1];
    size_t n;
    cli_err err
        = cli__parse(ctx, cmd, argc, argv, opts, sizeof opts / sizeof opts[0], pos, 0, 0, &n);
    if (err != CLI_OK)
        return err;
    const char *data = ctx->dir;
    if (data == NULL || data[0] == '\0')
        return cli__usage(ctx, cmd, "--dir DATA is required (or set PATTO_DIR)");
    if (org == NULL || role == NULL || listen == NULL || admin_pub == NULL)
        return cli__usage(ctx, cmd, "--org, --role, --listen and --admin-pub are required");
    if (!cli_valid_org(org))
        return cli__fail(ctx, CLI_EINPUT,
            "org '%s' is not an org id (1-32 of a-z 0-9 -, e.g. comune-latina)", org);
    int role_num = cli_role_parse(role);
    if (role_num == 0)
        return cli__fail(
            ctx, CLI_EINPUT, "role '%s' is not one of comune cpia cpi prefettura coop coord", role);
    if (!cli_valid_url(listen))
        return cli__fail(ctx, CLI_EINPUT,
            "listen URL '%s' is not tcp://HOST:PORT (e.g. tcp://10.0.0.5:7401)", listen);
    uint8_t pin[PROTO_ORIGIN_LEN];
    if (!cli_hex_decode(admin_pub, pin, PROTO_ORIGIN_LEN))
        return cli__fail(ctx, CLI_EINPUT,
            "--admin-pub must be the 64 hex digits of the network admin's public key (the "
            "admin's admin.pub)");
    if (name == NULL)
        name = org;
    if (!cli_valid_text(name, PROTO_TEXT_MAX))
        return cli__fail(ctx, CLI_EINPUT,
            "--name must be 1-%d bytes of text without control characters", PROTO_TEXT_MAX);
    if (ctx->operator_flag != NULL && !valid_operator(ctx->operator_flag))
        return cli__fail(ctx, CLI_EINPUT,
            "--operator must be 1-%d characters without control characters, ';' or '#', and "
            "no spaces at either end",
            CLI__OPERATOR_MAX);

    char key[4200], conf[4200], sch[4200];
    if ((err = cli__path(ctx, key, sizeof key, data, IDENTITY_KEY)) != CLI_OK
        || (err = cli__path(ctx, conf, sizeof conf, data, CONFIG_FILE)) != CLI_OK
        || (err = cli__path(ctx, sch, sizeof sch, data, SCHEMA_FILE)) != CLI_OK)
        return err;
    if (cli__exists(conf) || cli__exists(key))
        return cli__fail(ctx, CLI_EINPUT,
            "%s already holds a node (%s or %s); refusing to replace its keys", data, CONFIG_FILE,
            IDENTITY_KEY);
    if (cli__exists(sch))
        return cli__fail(ctx, CLI_EINPUT, "%s already holds %s; use an empty or new directory",
            data, SCHEMA_FILE);

    uint8_t *schema_bytes = NULL;
    size_t schema_len = 0;
    if (schema != NULL) {
        uint8_t hash[PROTO_HASH_LEN];
        if ((err = cli__schema_read(ctx, schema, &schema_bytes, &schema_len, hash)) != CLI_OK)
            return err;
    }
    if (proto_init() != PROTO_OK) {
        free(schema_bytes);
        return cli__fail(ctx, CLI_EINTERNAL, "cannot initialise the crypto library");
    }

    bool made_dir = false, wrote_key = false, wrote_schema = false;
    proto_identity *id = NULL;
    json_object *entry = NULL;
    char *config = NULL;
    uint8_t seeds[2 * PROTO_SEED_LEN];
    if (mkdir(data, 0750) == 0) {
        made_dir = true;
        /* Exactly 0750 whatever the umask: the node's group reads the socket, not the keys. */
        if (chmod(data, 0750) != 0) {
            err = cli__fail(
                ctx, CLI_EINPUT, "cannot set the mode of %s: %s", data, strerror(errno));
            goto fail;
        }
    } else if (errno != EEXIST) {
        err = cli__fail(ctx, CLI_EINPUT, "cannot create %s: %s", data, strerror(errno));
        goto fail;
    }
    proto_err perr = proto_identity_new(NULL, &id);
    if (perr != PROTO_OK) {
        err = cli__fail(
            ctx, CLI_EINTERNAL, "cannot make the node's keys: %s", proto_strerror(perr));
        goto fail;
    }
    proto_identity_seeds(id, seeds, seeds + PROTO_SEED_LEN);
    err = cli__write_file(ctx, key, seeds, sizeof seeds, 0600, true);
    cli__wipe(seeds, sizeof seeds);
    if (err != CLI_OK)
        goto fail;
    wrote_key = true;
    if (schema_bytes != NULL)
        err = cli__write_file(ctx, sch, schema_bytes, schema_len, 0644, true);
    else
        err = cli__write_file(ctx, sch, patto_default_schema, patto_default_schema_len, 0644, true);
    if (err != CLI_OK)
        goto fail;
    wrote_schema = true;

    char pin_hex[2 * PROTO_ORIGIN_LEN + 1];
    cli_hex_encode(pin, PROTO_ORIGIN_LEN, pin_hex);
    size_t cap = 1024 + strlen(org) + strlen(role) + strlen(listen)
        + (ctx->operator_flag != NULL ? strlen(ctx->operator_flag) : 0);
    if ((config = malloc(cap)) == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
        goto fail;
    }
    int len = snprintf(config, cap,
        "; pattod configuration written by patto init (reference: node/CONFIG.md)\n"
        "[node]\n"
        "org = %s\n"
        "role = %s\n"
        "listen = %s\n"
        "%s%s%s"
        "\n"
        "[network]\n"
        "admin_pub = %s\n",
        org, role, listen, ctx->operator_flag != NULL ? "operator = " : "",
        ctx->operator_flag != NULL ? ctx->operator_flag : "",
        ctx->operator_flag != NULL ? "\n" : "", pin_hex);
    if (len < 0 || (size_t)len >= cap) {
        err = cli__fail(ctx, CLI_EINTERNAL, "the config file does not fit its buffer");
        goto fail;
    }
    /* Written last: a directory with pattod.conf is a finished init. */
    if ((err = cli__write_file(ctx, conf, config, (size_t)len, 0640, true)) != CLI_OK)
        goto fail;

    cli__member m = { .org = org, .name = name, .role = role_num, .url = listen };
    memcpy(m.origin, proto_identity_origin(id), PROTO_ORIGIN_LEN);
    memcpy(m.box_pk, proto_identity_box_pk(id), PROTO_BOX_PK_LEN);
    if ((entry = cli__entry_new(&m)) == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
        goto done; /* the directory is complete: keep it */
    }
    /* The entry is meant to be saved and given to `patto network add`: JSON in both modes. */
    err = cli__json_print(ctx, entry);
    goto done;
fail:
    if (wrote_schema)
        unlink(sch);
    if (wrote_key)
        unlink(key);
    if (made_dir)
        rmdir(data);
done:
    json_object_put(entry);
    free(config);
    free(schema_bytes);
    proto_identity_free(id);
    return err;
}
