/* The configuration file, parsed with inih (Debian's libinih). The reference of every key is
 * node/CONFIG.md; keep the two in step. May call: common.c, proto (names and values). */
#include "core.h"

#include <errno.h>
#include <ini.h>
#include <proto/proto.h>
#include <stdlib.h>
#include <string.h>

void node_config_defaults(node_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->log_level = NODE_LOG_INFO;
    cfg->map_size = UINT64_C(256) << 20;
    cfg->map_size_max = UINT64_C(1) << 40;
    cfg->compact_every_ms = UINT64_C(24) * 3600000;
    cfg->rekey_notice_ms = UINT64_C(72) * 3600000;
    cfg->held_per_origin = 10000;
    cfg->memory_bytes = UINT64_C(128) << 20;
    cfg->pending_per_author = 10000;
    cfg->max_message_bytes = UINT64_C(16) << 20;
    cfg->handshake_timeout_ms = 5000;
    cfg->anti_entropy_ms = 2000;
    cfg->idle_timeout_ms = 20000;
    strcpy(cfg->schema, "schema.json");
}

void node_config_fini(node_config *cfg)
{
    if (cfg == NULL)
        return;
    free(cfg->dials);
    cfg->dials = NULL;
    cfg->ndials = 0;
}

const char *node_config_advertise(const node_config *cfg)
{
    return cfg->advertise[0] != 0 ? cfg->advertise : cfg->listen;
}

const char *node_config_dial_url(const node_config *cfg, const char *org)
{
    for (size_t i = 0; i < cfg->ndials; i++)
        if (strcmp(cfg->dials[i].org, org) == 0)
            return cfg->dials[i].url;
    return NULL;
}

typedef struct parse_ctx {
    node_config *cfg;
    char error[400]; /* the first error; inih reports its line */
    bool oom;
    unsigned seen; /* bit per [node]/[store]/[sync]/[network] key, to refuse duplicates */
    bool have_admin;
    size_t dials_cap;
} parse_ctx;

/* Record the first error and tell inih this line is bad. */
static int bad(parse_ctx *p, const char *fmt, ...) NODE_PRINTF(2, 3);
static int bad(parse_ctx *p, const char *fmt, ...)
{
    if (p->error[0] == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->error, sizeof(p->error), fmt, ap);
        va_end(ap);
    }
    return 0;
}

static bool url_valid(const char *url)
{
    return proto_url_valid(url, strlen(url));
}

/* A decimal number in [lo, hi], nothing else on the value. */
static bool number(const char *v, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (*v < '0' || *v > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end != 0 || x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

typedef enum key_kind { K_ORG, K_ROLE, K_URL, K_OPERATOR, K_LEVEL, K_NUM, K_KEY, K_FILE } key_kind;

typedef struct key_def {
    const char *section, *name;
    key_kind kind;
    size_t offset;         /* into node_config */
    uint64_t lo, hi, unit; /* K_NUM: range of the written number, multiplier */
} key_def;

#define OFF(f) offsetof(node_config, f)
static const key_def keys[] = {
    { "node", "org", K_ORG, OFF(org), 0, 0, 0 },
    { "node", "role", K_ROLE, OFF(role), 0, 0, 0 },
    { "node", "listen", K_URL, OFF(listen), 0, 0, 0 },
    { "node", "advertise", K_URL, OFF(advertise), 0, 0, 0 },
    { "node", "operator", K_OPERATOR, OFF(operator_name), 0, 0, 0 },
    { "node", "log_level", K_LEVEL, OFF(log_level), 0, 0, 0 },
    { "node", "memory_mb", K_NUM, OFF(memory_bytes), 32, 1 << 20, 1 << 20 },
    { "store", "map_size_mb", K_NUM, OFF(map_size), 1, 1 << 20, 1 << 20 },
    { "store", "max_size_mb", K_NUM, OFF(map_size_max), 1, 1 << 24, 1 << 20 },
    { "store", "compact_every_hours", K_NUM, OFF(compact_every_ms), 0, 8760, 3600000 },
    { "sync", "max_message_bytes", K_NUM, OFF(max_message_bytes), 65536, 1u << 30, 1 },
    { "sync", "handshake_timeout_ms", K_NUM, OFF(handshake_timeout_ms), 100, 60000, 1 },
    { "sync", "anti_entropy_ms", K_NUM, OFF(anti_entropy_ms), 50, 3600000, 1 },
    { "sync", "idle_timeout_ms", K_NUM, OFF(idle_timeout_ms), 1000, 3600000, 1 },
    { "sync", "held_headers_per_origin", K_NUM, OFF(held_per_origin), 100, 1000000, 1 },
    { "sync", "held_headers_mb", K_NUM, OFF(held_bytes), 1, 4096, 1 << 20 },
    { "sync", "pending_per_author", K_NUM, OFF(pending_per_author), 10, 1000000, 1 },
    { "sync", "verify_each_signature", K_NUM, OFF(verify_each), 0, 1, 1 },
    { "network", "admin_pub", K_KEY, OFF(admin_pub), 0, 0, 0 },
    { "network", "schema", K_FILE, OFF(schema), 0, 0, 0 },
    { "network", "rekey_notice_hours", K_NUM, OFF(rekey_notice_ms), 0, 8760, 3600000 },
};
#undef OFF

static int set_key(parse_ctx *p, const key_def *k, const char *value)
{
    char *base = (char *)p->cfg;
    uint64_t num;
    switch (k->kind) {
    case K_ORG:
        if (!proto_org_valid(value, strlen(value)))
            return bad(p, "org '%s' is not a valid org id (1-32 of a-z 0-9 -)", value);
        strcpy(base + k->offset, value);
        return 1;
    case K_ROLE:
        if (proto_role_parse(value, strlen(value)) == 0)
            return bad(
                p, "role '%s' is not one of comune cpia cpi prefettura coop coord%s", value, "");
        strcpy(base + k->offset, value);
        return 1;
    case K_URL:
        if (!url_valid(value))
            return bad(p, "%s '%s' is not a tcp://HOST:PORT URL", k->name, value);
        strcpy(base + k->offset, value);
        return 1;
    case K_OPERATOR:
        if (!proto_text_valid(value, strlen(value), NODE_OPERATOR_MAX))
            return bad(
                p, "operator must be 1 to 64 bytes of UTF-8 text without control characters");
        strcpy(base + k->offset, value);
        return 1;
    case K_LEVEL:
        if (node_log_level_parse(value, (node_log_level *)(void *)(base + k->offset)) != NODE_OK)
            return bad(p, "log_level '%s' is not one of error warn info debug", value);
        return 1;
    case K_KEY: {
        uint8_t *out = (uint8_t *)base + k->offset;
        if (!proto_hex_decode(value, strlen(value), out, 32))
            return bad(p, "%s must be 64 hexadecimal digits (a 32-byte key)", k->name);
        p->have_admin = true;
        return 1;
    }
    case K_FILE:
        if (value[0] == 0 || strlen(value) > NODE_URL_MAX || strchr(value, '/') != NULL
            || value[0] == '.')
            return bad(p, "%s must be a file name inside the data directory", k->name);
        strcpy(base + k->offset, value);
        return 1;
    case K_NUM:
        if (!number(value, k->lo, k->hi, &num)) {
            return bad(p, "%s must be a whole number from %llu to %llu", k->name,
                (unsigned long long)k->lo, (unsigned long long)k->hi);
        }
        *(uint64_t *)(void *)(base + k->offset) = num * k->unit;
        return 1;
    }
    return 0;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
    parse_ctx *p = user;
    if (strcmp(section, "dial") == 0) {
        if (!proto_org_valid(name, strlen(name)))
            return bad(p, "[dial] key '%s' is not a valid org id", name);
        if (!url_valid(value))
            return bad(p, "[dial] %s: '%s' is not a tcp://HOST:PORT URL", name, value);
        if (node_config_dial_url(p->cfg, name) != NULL)
            return bad(p, "[dial] %s is given twice", name);
        node_err err = node__vec_reserve(&p->cfg->dials, &p->dials_cap, p->cfg->ndials + 1,
            sizeof(*p->cfg->dials), PROTO_MEMBERS_MAX);
        if (err == NODE_EFULL)
            return bad(p, "[dial] names more than %d orgs", PROTO_MEMBERS_MAX);
        if (err != NODE_OK) {
            p->oom = true;
            return 0;
        }
        node_dial *d = &p->cfg->dials[p->cfg->ndials++];
        strcpy(d->org, name);
        strcpy(d->url, value);
        return 1;
    }
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (strcmp(section, keys[i].section) == 0 && strcmp(name, keys[i].name) == 0) {
            if (p->seen & (1u << i))
                return bad(p, "%s is given twice in this section", name);
            p->seen |= 1u << i;
            return set_key(p, &keys[i], value);
        }
    }
    if (strcmp(section, "node") && strcmp(section, "store") && strcmp(section, "sync")
        && strcmp(section, "network"))
        return bad(p, "unknown section [%s] (known: node, store, sync, network, dial)", section);
    return bad(p, "unknown key '%s' in [%s]", name, section);
}

node_err node_config_load(const char *path, node_config *cfg, node_errmsg *msg)
{
    if (path == NULL || cfg == NULL)
        return NODE_EINVAL;
    node_config next;
    node_config_defaults(&next);
    parse_ctx p = { .cfg = &next };
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return node__fail(msg, NODE_EIO, "cannot read %s: %s", path, strerror(errno));
    int line = ini_parse_file(f, on_key, &p);
    fclose(f);
    node_err err = NODE_OK;
    if (p.oom)
        err = node__fail(msg, NODE_ENOMEM, "%s: out of memory", path);
    else if (line > 0)
        err = node__fail(msg, NODE_ECONFIG, "%s:%d: %s", path, line,
            p.error[0] ? p.error : "not a key = value line or [section]");
    else if (line < 0)
        err = node__fail(msg, NODE_EIO, "cannot read %s", path);
    else if (next.org[0] == 0 || next.role[0] == 0 || next.listen[0] == 0)
        err = node__fail(msg, NODE_ECONFIG, "%s: [node] needs org, role and listen (missing: %s)",
            path,
            next.org[0] == 0        ? "org"
                : next.role[0] == 0 ? "role"
                                    : "listen");
    else if (next.advertise[0] == 0 && proto_url_wildcard(next.listen, strlen(next.listen)))
        err = node__fail(msg, NODE_ECONFIG,
            "%s: [node] listen = %s binds every address of this machine: set [node] advertise = "
            "tcp://HOST:PORT, the address the other members dial",
            path, next.listen);
    else if (proto_url_wildcard(next.advertise, strlen(next.advertise)))
        err = node__fail(msg, NODE_ECONFIG,
            "%s: [node] advertise = %s cannot be dialled: give the address of this machine the "
            "other members reach",
            path, next.advertise);
    else if (!p.have_admin)
        err = node__fail(msg, NODE_ECONFIG,
            "%s: [network] needs admin_pub, the network admin's public key", path);
    else if (next.map_size > next.map_size_max)
        err = node__fail(
            msg, NODE_ECONFIG, "%s: [store] map_size_mb is larger than max_size_mb", path);
    else if (next.held_bytes > next.memory_bytes / 16)
        err = node__fail(msg, NODE_ECONFIG,
            "%s: [sync] held_headers_mb = %llu is more than its share of [node] memory_mb = %llu "
            "(a sixteenth, %llu): raise memory_mb or lower held_headers_mb",
            path, (unsigned long long)(next.held_bytes >> 20),
            (unsigned long long)(next.memory_bytes >> 20),
            (unsigned long long)(next.memory_bytes >> 24));
    else if (next.idle_timeout_ms < 3 * next.anti_entropy_ms)
        err = node__fail(msg, NODE_ECONFIG,
            "%s: [sync] idle_timeout_ms must be at least 3 times anti_entropy_ms (keepalives are "
            "sent on the anti-entropy tick)",
            path);
    if (err != NODE_OK) {
        node_config_fini(&next);
        return err;
    }
    node_config_fini(cfg);
    *cfg = next;
    return NODE_OK;
}

void node__budget_split(const node_config *cfg, node_budget *b)
{
    size_t m = (size_t)cfg->memory_bytes;
    b->total = m;
    b->inq = m / 4;
    b->park = m / 16 * 3;
    b->held = cfg->held_bytes != 0 ? (size_t)cfg->held_bytes : m / 16;
    b->rx = m / 8;
    b->tx = m / 8;
    b->lists = m / 16;
    b->wants = b->lists / 2 / NODE_WANT_COST;
    b->waits = b->lists / 2 / NODE_WAIT_COST;
}
