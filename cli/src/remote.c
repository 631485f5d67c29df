/*
 * remote.c - the commands answered by the node over the control socket (node/CONTROL.md):
 * argument checks that need no node, the request, and the rendering of the answer (the
 * payload itself with --json, a table or text for people without).
 */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NO_VALUE "-"
#define PROVISION_MAX 255 /* bytes of the legal provision of a grant (node/CONTROL.md) */

/* ---------------------------------------------------------------------------------------- */
/* Small JSON readers for rendering: a missing or mistyped member renders as "-", never fails */

static json_object *jget(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o == NULL || !json_object_is_type(o, json_type_object)
        || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

static const char *jtext(json_object *o, const char *key)
{
    json_object *v = jget(o, key);
    if (v == NULL || json_object_is_type(v, json_type_null))
        return NO_VALUE;
    if (json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    return json_object_to_json_string_ext(
        v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static size_t jlen(json_object *a)
{
    return a != NULL && json_object_is_type(a, json_type_array) ? json_object_array_length(a) : 0;
}

/* A value as a person reads it: strings bare, everything else as compact JSON. */
static const char *plain(json_object *v)
{
    if (v == NULL || json_object_is_type(v, json_type_null))
        return NO_VALUE;
    if (json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    return json_object_to_json_string_ext(
        v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static int text_width(const char *s)
{
    /* Columns of UTF-8 text: count the bytes that start a character. */
    int w = 0;
    for (; *s != '\0'; s++)
        if (((unsigned char)*s & 0xC0) != 0x80)
            w++;
    return w;
}

static void pad_print(const char *s, int width)
{
    int w = text_width(s);
    fputs(s, stdout);
    for (; w < width; w++)
        putchar(' ');
}

static cli_err stdout_ok(cli__ctx *ctx)
{
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli__fail(ctx, CLI_EINTERNAL, _("cannot write to stdout"));
    return CLI_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Shared shape of a remote command                                                          */

typedef void (*render_fn)(json_object *payload, const char *const *sent, size_t nsent);

/* Send command with args, then print the payload (JSON) or render it. */
static cli_err exchange(cli__ctx *ctx, const char *command, const char *const *args, size_t nargs,
    const proto_bytes *binary, render_fn render)
{
    proto_bytes *b = calloc(nargs + 1, sizeof *b);
    if (b == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    size_t n = 0;
    for (size_t i = 0; i < nargs; i++)
        b[n++] = (proto_bytes) { (const uint8_t *)args[i], strlen(args[i]) };
    if (binary != NULL)
        b[n++] = *binary;
    json_object *payload = NULL;
    cli_err err = cli__call(ctx, command, b, n, &payload);
    free(b);
    if (err != CLI_OK)
        return err;
    if (ctx->json)
        err = cli__json_print(ctx, payload);
    else
        render(payload, args, nargs);
    json_object_put(payload);
    if (err != CLI_OK)
        return err;
    return stdout_ok(ctx);
}

static cli_err no_args(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *pos[1];
    size_t npos;
    return cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 0, 0, &npos);
}

/* Check a case id here (a typo is caught before the node is asked) and send its canonical form. */
static cli_err case_id(cli__ctx *ctx, const char *text, char out[PROTO_CASE_ID_TEXT_SIZE])
{
    proto_case_id id;
    proto_err perr = proto_case_id_parse(text, strlen(text), &id);
    if (perr == PROTO_ECHECKSUM)
        return cli__fail(ctx, CLI_EINPUT,
            _("'%s' is not a case id: its checksum does not match (a character is mistyped)"),
            text);
    if (perr != PROTO_OK)
        return cli__fail(ctx, CLI_EUSAGE,
            _("'%s' is not a case id: expected pc- followed by 29 letters and digits"), text);
    proto_case_id_format(&id, out);
    return CLI_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* status                                                                                    */

static uint64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A command without arguments: the request alone, its answer rendered. */
static cli_err plain_request(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv,
    const char *request, render_fn render)
{
    cli_err err = no_args(ctx, cmd, argc, argv);
    return err != CLI_OK ? err : exchange(ctx, request, NULL, 0, NULL, render);
}

/* A time the node wrote, for people (Europe/Rome); the text as it came when it is not one. */
static const char *when(json_object *o, const char *key, char buf[CLI_TIME_TEXT_SIZE])
{
    const char *t = jtext(o, key);
    return cli_rome_time(t, buf, CLI_TIME_TEXT_SIZE) ? buf : t;
}

/* Whole seconds as "2 h 5 min" (the two largest units). */
static void duration_text(json_object *v, char *out, size_t n)
{
    if (v == NULL || !json_object_is_type(v, json_type_int)) {
        snprintf(out, n, NO_VALUE);
        return;
    }
    long long s = (long long)json_object_get_int64(v);
    if (s >= 86400)
        snprintf(out, n, _("%lld d %lld h"), s / 86400, s % 86400 / 3600);
    else if (s >= 3600)
        snprintf(out, n, _("%lld h %lld min"), s / 3600, s % 3600 / 60);
    else if (s >= 60)
        snprintf(out, n, _("%lld min %lld s"), s / 60, s % 60);
    else
        snprintf(out, n, _("%lld s"), s);
}

/* A peer's last_heard_s: whole seconds (a fraction from an older node), or null for never. */
static void heard_text(json_object *v, char *out, size_t n)
{
    if (v == NULL || json_object_is_type(v, json_type_null))
        snprintf(out, n, "%s", _("never"));
    else if (json_object_is_type(v, json_type_int))
        snprintf(out, n, _("%lld s ago"), (long long)json_object_get_int64(v));
    else
        snprintf(out, n, _("%.1f s ago"), json_object_get_double(v));
}

/* A clock offset in ms as "+1.2 s" (the peer ahead) or "-0.3 s", or "unknown" for null. */
static void offset_text(json_object *v, char *out, size_t n)
{
    if (v == NULL || !json_object_is_type(v, json_type_int)) {
        snprintf(out, n, "%s", _("unknown"));
        return;
    }
    int64_t ms = json_object_get_int64(v);
    uint64_t tenths = ((ms < 0 ? (uint64_t)0 - (uint64_t)ms : (uint64_t)ms) + 50) / 100;
    snprintf(out, n, "%c%" PRIu64 ".%u s", ms < 0 && tenths > 0 ? '-' : '+', tenths / 10,
        (unsigned)(tenths % 10));
}

/* The org of an origin (64 hex) from the status's members, or the origin itself. */
static const char *origin_org(json_object *members, const char *origin)
{
    for (size_t i = 0; i < jlen(members); i++) {
        json_object *m = json_object_array_get_idx(members, i);
        json_object *o = jget(m, "origin");
        if (o != NULL && json_object_is_type(o, json_type_string)
            && strcmp(json_object_get_string(o), origin) == 0)
            return jtext(m, "org");
    }
    return origin;
}

static void render_peers(json_object *peers)
{
    if (jlen(peers) == 0) {
        printf("%s", _("no peers\n"));
        return;
    }
    /* TRANSLATORS: the columns of patto status's peers; keep each within its width (33, 11, 8,
       12 characters, no accented letters). */
    printf("%-33s %-11s %8s  %-12s  %s\n", _("PEER"), _("STATE"), _("LAG"), _("LAST HEARD"),
        _("CLOCK"));
    for (size_t i = 0; i < jlen(peers); i++) {
        json_object *e = json_object_array_get_idx(peers, i);
        char heard[64], clock[64];
        heard_text(jget(e, "last_heard_s"), heard, sizeof heard);
        offset_text(jget(e, "clock_offset_ms"), clock, sizeof clock);
        printf("%-33s %-11s %8s  %-12s  %s\n", jtext(e, "org"), jtext(e, "state"), jtext(e, "lag"),
            heard, clock);
    }
}

/* The version vector with each origin by its org name (members carry the origins). */
static void render_vv(json_object *vv, json_object *members)
{
    if (vv == NULL || !json_object_is_type(vv, json_type_object)
        || json_object_object_length(vv) == 0)
        return;
    int width = text_width(_("ORIGIN"));
    json_object_object_foreach(vv, origin, seq)
    {
        (void)seq;
        int w = text_width(origin_org(members, origin));
        if (w > width)
            width = w;
    }
    printf("\n");
    pad_print(_("ORIGIN"), width);
    printf("  %s\n", _("SEQ"));
    json_object_object_foreach(vv, o2, s2)
    {
        pad_print(origin_org(members, o2), width);
        printf("  %s\n", plain(s2));
    }
}

/* A label of patto status (N_), translated, in a column of 11 characters then gap spaces; ""
 * for none (a continuation line). */
static void label_gap(const char *text, int gap)
{
    pad_print(text[0] != '\0' ? _(text) : "", 11);
    printf("%*s", gap, "");
}

static void label(const char *text)
{
    label_gap(text, 2);
}

static void render_status(json_object *p, const char *const *sent, size_t nsent)
{
    (void)sent;
    (void)nsent;
    json_object *v = jget(p, "versions");
    json_object *c = jget(p, "counts");
    json_object *w = jget(p, "waiting");
    json_object *members = jget(p, "members");
    char up[64];
    duration_text(jget(p, "uptime_s"), up, sizeof up);
    /* TRANSLATORS: the labels of patto status are at most 11 characters. */
    label(N_("org"));
    printf("%s (%s)\n", jtext(p, "org"), jtext(p, "role"));
    label(N_("node"));
    printf(_("pid %s, up %s, data %s\n"), jtext(p, "pid"), up, jtext(p, "dir"));
    label(N_("address"));
    printf(_("listen %s, advertised %s\n"), jtext(p, "listen"), jtext(p, "advertise"));
    label(N_("versions"));
    printf(_("program %s, protocol %s, schema %s, manifest %s\n"), jtext(v, "program"),
        jtext(v, "protocol"), jtext(v, "schema"), jtext(v, "manifest"));
    json_object *manifest = NULL;
    if (v != NULL && json_object_object_get_ex(v, "manifest", &manifest) && manifest == NULL)
        printf("%s", _("no manifest yet: import one with patto manifest import FILE\n"));
    json_object *removed = jget(p, "removed");
    if (removed != NULL && json_object_get_boolean(removed)) {
        label(N_("REMOVED"));
        printf(_("this node was removed from the network in manifest version %s (its key is "
                 "retired): it writes nothing and dials no one; its data stays readable\n"),
            jtext(v, "manifest"));
    }
    json_object *next = NULL;
    if (v != NULL && json_object_object_get_ex(v, "schema_file", &next) && next != NULL) {
        label(N_("SCHEMA"));
        printf(_("the schema file (%s) waits for a manifest that names it; the network's stays "
                 "in force\n"),
            jtext(v, "schema_file"));
    }
    label(N_("counts"));
    printf(_("cases %s, headers %s, bodies %s\n"), jtext(c, "cases"), jtext(c, "headers"),
        jtext(c, "bodies"));
    label(N_("waiting"));
    printf(_("causal %s, clock %s, key %s, bodies %s, headers %s\n"), jtext(w, "causal"),
        jtext(w, "clock"), jtext(w, "key"), jtext(w, "bodies"), jtext(w, "headers"));
    json_object *mem = jget(p, "memory");
    if (mem != NULL) {
        json_object *heap = jget(mem, "heap"), *budget = jget(mem, "budget");
        label(N_("memory"));
        printf(_("heap %.1f MiB, budget %.0f MiB ([node] memory_mb)\n"),
            heap != NULL ? (double)json_object_get_int64(heap) / 1048576.0 : 0.0,
            budget != NULL ? (double)json_object_get_int64(budget) / 1048576.0 : 0.0);
    }
    json_object *alerts = jget(p, "alerts");
    for (size_t i = 0; i < jlen(alerts); i++) {
        json_object *a = json_object_array_get_idx(alerts, i);
        const char *kind = jtext(a, "kind");
        if (strcmp(kind, "removed") != 0 && strcmp(kind, "fork") != 0) { /* (said below) */
            label(N_("ALERT"));
            printf("%s\n", jtext(a, "message"));
        }
    }
    json_object *q = jget(p, "quarantined");
    if (jlen(q) == 0) {
        label(N_("quarantined"));
        printf("%s", _("none\n"));
    } else {
        for (size_t i = 0; i < jlen(q); i++) {
            json_object *e = json_object_array_get_idx(q, i);
            label(i == 0 ? N_("QUARANTINED") : "");
            printf(_("%s: two different headers at seq %s\n"), jtext(e, "org"), jtext(e, "seq"));
            json_object *self = jget(e, "self");
            if (self != NULL && json_object_get_boolean(self)) {
                printf("%13s", "");
                printf(_("this node's own log forked: its %s writes from seq %s on "
                         "are void at every node, and it cannot write again until the network "
                         "administrator gives it a new key (patto network rekey)\n"),
                    jtext(e, "void_own"), jtext(e, "seq"));
            }
            json_object *writes = jget(e, "void_own_writes");
            for (size_t k = 0; k < jlen(writes); k++) {
                json_object *wr = json_object_array_get_idx(writes, k);
                char at[CLI_TIME_TEXT_SIZE];
                json_object *ms = jget(wr, "at_ms");
                cli_rome_time_ms(
                    ms != NULL ? (uint64_t)json_object_get_int64(ms) : 0, at, sizeof at);
                printf("%13s", "");
                printf(_("void: seq %s, %s, case %s, scope %s, written %s\n"), jtext(wr, "seq"),
                    jtext(wr, "kind"), jtext(wr, "case"), jtext(wr, "scope"), at);
            }
            if ((size_t)json_object_get_int64(jget(e, "void_own")) > jlen(writes)) {
                printf("%13s", "");
                printf(_("(the first %zu of %s listed)\n"), jlen(writes), jtext(e, "void_own"));
            }
        }
    }
    json_object *closed = jget(p, "closed");
    for (size_t i = 0; i < jlen(closed); i++) {
        json_object *x = json_object_array_get_idx(closed, i), *purged = jget(x, "purged");
        char since[CLI_TIME_TEXT_SIZE];
        label(i == 0 ? N_("CLOSED") : "");
        /* TRANSLATORS: the third %s is "narrowed to read" or the node's reason (revoked,
           expired, withdrawn, dropped, left: not translated); the sixth "purged here" or "kept,
           closed". */
        printf(_("case %s, scope %s: access %s by %s since %s (basis %s); %s; %s of this node's "
                 "writes refused\n"),
            jtext(x, "case"), jtext(x, "scope"),
            strcmp(jtext(x, "access"), "read") == 0 ? _("narrowed to read") : jtext(x, "reason"),
            jtext(x, "owner"), when(x, "since", since), jtext(x, "basis"),
            purged != NULL && json_object_get_boolean(purged) ? _("purged here")
                                                              : _("kept, closed"),
            jtext(x, "own_writes_refused"));
    }
    if ((size_t)json_object_get_int64(jget(p, "closed_count")) > jlen(closed)) {
        printf("%13s", "");
        printf(_("(the first %zu of %s listed)\n"), jlen(closed), jtext(p, "closed_count"));
    }
    printf("\n");
    render_peers(jget(p, "peers"));
    render_vv(jget(p, "vv"), members);
    if (jlen(members) > 0)
        printf("\n");
    uint64_t now = wall_ms();
    for (size_t i = 0; i < jlen(members); i++) {
        json_object *e = json_object_array_get_idx(members, i);
        label_gap(i == 0 ? N_("members") : "", 1);
        printf("%s (%s)", jtext(e, "org"), jtext(e, "role"));
        json_object *active = jget(e, "active"), *from = jget(e, "key_effective_ms");
        if (active != NULL && json_object_is_type(active, json_type_boolean)
            && !json_object_get_boolean(active)) {
            printf("%s", _(", left the network"));
        } else if (from != NULL && json_object_is_type(from, json_type_int)
            && json_object_get_int64(from) > 0 && (uint64_t)json_object_get_int64(from) > now) {
            char at[CLI_TIME_TEXT_SIZE] = "?";
            cli_rome_time_ms((uint64_t)json_object_get_int64(from), at, sizeof at);
            printf(_(", new key from %s"), at);
        }
        printf("\n");
    }
    json_object *purposes = jget(p, "purposes");
    for (size_t i = 0; i < jlen(purposes); i++) {
        json_object *e = json_object_array_get_idx(purposes, i);
        label_gap(i == 0 ? N_("purposes") : "", 1);
        printf("%-16s %s\n", jtext(e, "id"), jtext(e, "description"));
    }
}

cli_err cli__status(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    return plain_request(ctx, cmd, argc, argv, "status", render_status);
}

/* ---------------------------------------------------------------------------------------- */
/* digest                                                                                    */

static void render_digest(json_object *p, const char *const *sent, size_t nsent)
{
    (void)sent;
    (void)nsent;
    json_object *vv = jget(p, "vv");
    json_object *tags = jget(p, "tags");
    printf("%-64s  %s\n", _("ORIGIN"), _("SEQ"));
    if (vv != NULL && json_object_is_type(vv, json_type_object)) {
        json_object_object_foreach(vv, origin, seq) printf("%-64s  %s\n", origin, plain(seq));
    }
    printf("\n%-64s  %s\n", _("TAG"), _("DIGEST"));
    if (tags != NULL && json_object_is_type(tags, json_type_object)) {
        json_object_object_foreach(tags, tag, digest) printf("%-64s  %s\n", tag, plain(digest));
    }
}

cli_err cli__digest(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    return plain_request(ctx, cmd, argc, argv, "digest", render_digest);
}

/* ---------------------------------------------------------------------------------------- */
/* schema                                                                                    */

static void render_schema(json_object *p, const char *const *sent, size_t nsent)
{
    (void)sent;
    (void)nsent;
    printf(_("schema %s version %s, hash %s\n"), jtext(p, "schema"), jtext(p, "version"),
        jtext(p, "hash"));
    json_object *scopes = jget(p, "scopes");
    for (size_t i = 0; i < jlen(scopes); i++) {
        json_object *s = json_object_array_get_idx(scopes, i);
        json_object *fields = jget(s, "fields");
        printf("\n%s", jtext(s, "name"));
        if (jget(s, "label") != NULL)
            printf(" - %s", jtext(s, "label"));
        printf("\n");
        for (size_t j = 0; j < jlen(fields); j++) {
            json_object *f = json_object_array_get_idx(fields, j);
            char type[64];
            if (jget(f, "of") != NULL)
                /* TRANSLATORS: a field's type, as "set of text" (the types stay as the schema
                   names them). */
                snprintf(type, sizeof type, _("%s of %s"), jtext(f, "type"), jtext(f, "of"));
            else
                snprintf(type, sizeof type, "%s", jtext(f, "type"));
            printf("  ");
            pad_print(jtext(f, "name"), 24);
            printf(" ");
            pad_print(type, 16);
            printf(" %s", jget(f, "label") != NULL ? jtext(f, "label") : "");
            json_object *values = jget(f, "values");
            if (jlen(values) > 0) {
                printf(" [");
                for (size_t k = 0; k < jlen(values); k++)
                    printf("%s%s", k > 0 ? " " : "", plain(json_object_array_get_idx(values, k)));
                printf("]");
            }
            if (jget(f, "min") != NULL || jget(f, "max") != NULL) {
                if (jget(f, "min") != NULL)
                    printf(" min %s", jtext(f, "min"));
                if (jget(f, "max") != NULL)
                    printf(" max %s", jtext(f, "max"));
            }
            if (jget(f, "check") != NULL)
                printf(" check %s", jtext(f, "check"));
            printf("\n");
        }
    }
}

cli_err cli__schema(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    return plain_request(ctx, cmd, argc, argv, "schema", render_schema);
}

/* ---------------------------------------------------------------------------------------- */
/* case new, set, unset                                                                      */

static void render_case_new(json_object *p, const char *const *sent, size_t nsent)
{
    (void)sent;
    (void)nsent;
    printf("%s\n", jtext(p, "id")); /* alone on the first line: scripts read it */
}

static void render_case_set(json_object *p, const char *const *sent, size_t nsent)
{
    (void)nsent;
    json_object *n = jget(p, "edits");
    long long edits = n != NULL ? (long long)json_object_get_int64(n) : 0;
    printf(P_("%s: %lld edit recorded\n", "%s: %lld edits recorded\n", (unsigned long)edits),
        jget(p, "id") != NULL ? jtext(p, "id") : sent[0], edits);
}

static void render_case_unset(json_object *p, const char *const *sent, size_t nsent)
{
    printf(_("%s: %s removed\n"), jget(p, "id") != NULL ? jtext(p, "id") : sent[0],
        nsent > 1 ? sent[1] : _("the field"));
}

cli_err cli__case_new(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (pos == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 0, (size_t)argc, &n);
    if (err == CLI_OK)
        err = exchange(ctx, "case.new", pos, n, NULL, render_case_new);
    free(pos);
    return err;
}

cli_err cli__case_set(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char **pos = calloc((size_t)argc + 1, sizeof *pos);
    if (pos == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    size_t n;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    cli_err err = cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 0, (size_t)argc, &n);
    if (err == CLI_OK && n == 0)
        err = cli__usage(ctx, cmd, _("missing CASE"));
    if (err == CLI_OK && n == 1)
        err = cli__usage(ctx, cmd, _("missing EDIT (scope.field=VALUE, += or -=)"));
    if (err == CLI_OK)
        err = case_id(ctx, pos[0], id);
    if (err == CLI_OK) {
        pos[0] = id;
        err = exchange(ctx, "case.set", pos, n, NULL, render_case_set);
    }
    free(pos);
    return err;
}

/* pos[0] a case id and, when n >= 2, pos[1] SCOPE.FIELD, checked here (a typo is caught before
 * the node is asked); pos[0] becomes the case's canonical form, held in id. */
static cli_err case_and_field(cli__ctx *ctx, const cli__cmd *cmd, const char **pos, size_t n,
    char id[PROTO_CASE_ID_TEXT_SIZE])
{
    if (n >= 2 && (strchr(pos[1], '.') == NULL || strchr(pos[1], '=') != NULL))
        return cli__usage(ctx, cmd, _("'%s' is not SCOPE.FIELD"), pos[1]);
    cli_err err = case_id(ctx, pos[0], id);
    if (err == CLI_OK)
        pos[0] = id;
    return err;
}

cli_err cli__case_unset(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *pos[3];
    size_t n;
    bool all = false;
    const cli__opt opts[] = { { "all", NULL, &all } };
    char id[PROTO_CASE_ID_TEXT_SIZE];
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 1, pos, 2, 2, &n);
    if (err != CLI_OK || (err = case_and_field(ctx, cmd, pos, n, id)) != CLI_OK)
        return err;
    pos[2] = "all";
    return exchange(ctx, "case.unset", pos, all ? 3 : 2, NULL, render_case_unset);
}

static void render_case_redact(json_object *p, const char *const *sent, size_t nsent)
{
    (void)sent;
    (void)nsent;
    printf(_("%s: event %s of %s redacted (its time and author stay)\n"), jtext(p, "id"),
        jtext(p, "event"), jtext(p, "field"));
}

cli_err cli__case_redact(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *pos[3];
    size_t n;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    cli_err err = cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 3, 3, &n);
    if (err != CLI_OK || (err = case_and_field(ctx, cmd, pos, n, id)) != CLI_OK)
        return err;
    return exchange(ctx, "case.redact", pos, 3, NULL, render_case_redact);
}

/* ---------------------------------------------------------------------------------------- */
/* case show                                                                                 */

static void print_field(const char *key, int width, json_object *value, json_object *conflict)
{
    pad_print(key, width);
    printf("  ");
    if (value != NULL && json_object_is_type(value, json_type_array)) {
        size_t n = json_object_array_length(value);
        json_object *first = n > 0 ? json_object_array_get_idx(value, 0) : NULL;
        if (n == 0) {
            printf("%s", _("(empty)"));
        } else if (first != NULL && json_object_is_type(first, json_type_object)
            && jget(first, "at") != NULL) {
            /* A timeline: one event a line, in timeline order. */
            for (size_t i = 0; i < n; i++) {
                json_object *e = json_object_array_get_idx(value, i);
                if (i > 0) {
                    printf("\n");
                    pad_print("", width + 2);
                }
                json_object *red = jget(e, "redacted");
                char at[CLI_TIME_TEXT_SIZE];
                printf("%s  %s  %s  [%s]", when(e, "at", at), jtext(e, "by"),
                    red != NULL && json_object_get_boolean(red) ? _("(redacted)")
                                                                : jtext(e, "event"),
                    jtext(e, "id"));
            }
        } else {
            for (size_t i = 0; i < n; i++)
                printf("%s%s", i > 0 ? ", " : "", plain(json_object_array_get_idx(value, i)));
        }
    } else {
        printf("%s", plain(value));
    }
    if (conflict != NULL && jlen(conflict) > 0) {
        printf("  %s", _("CONFLICT:"));
        for (size_t i = 0; i < jlen(conflict); i++)
            printf("%s %s", i > 0 ? " |" : "", plain(json_object_array_get_idx(conflict, i)));
    }
    printf("\n");
}

/* One access-log entry (CONTROL.md, case.show "access"), on one line; a grant's state when it
 * is not active and with_state. */
static void print_access_entry(json_object *e, bool with_state)
{
    char at[CLI_TIME_TEXT_SIZE], until[CLI_TIME_TEXT_SIZE];
    printf("#%s  %s  ", jtext(e, "number"), when(e, "recorded_at", at));
    if (strcmp(jtext(e, "kind"), "epoch") == 0) {
        printf(_("new epoch %s (a new key for the scope)"), jtext(e, "epoch"));
        return;
    }
    if (strcmp(jtext(e, "kind"), "narrowing") == 0) {
        bool none = strcmp(jtext(e, "access"), "none") == 0;
        /* TRANSLATORS: the %s in brackets is the node's reason (revoked, withdrawn, ...). */
        printf(none ? _("revocation of %s (%s): no access") : _("downgrade of %s (%s): read only"),
            jtext(e, "to"), jtext(e, "reason"));
        printf(_(", its writes beyond the cut refused, by %s"), jtext(e, "operator"));
        json_object *user = jget(e, "unix_user"), *note = jget(e, "note");
        if (user != NULL && json_object_is_type(user, json_type_string))
            printf(_(" (unix user %s)"), json_object_get_string(user));
        if (note != NULL && json_object_is_type(note, json_type_string))
            printf(_(", reason: %s"), json_object_get_string(note));
        return;
    }
    if (strcmp(jtext(e, "kind"), "withdrawal") == 0 || strcmp(jtext(e, "kind"), "drop") == 0) {
        json_object *evidence = jget(e, "evidence");
        printf(strcmp(jtext(e, "kind"), "drop") == 0
                ? _("drop of %s's access recorded at %s by %s")
                : _("withdrawal of %s's access recorded at %s by %s"),
            jtext(e, "to"), jtext(e, "from"), jtext(e, "operator"));
        if (evidence != NULL && json_object_is_type(evidence, json_type_string))
            printf(_(", evidence %s"), json_object_get_string(evidence));
        return;
    }
    if (strcmp(jtext(e, "kind"), "grant") != 0) {
        printf("%s", jtext(e, "kind")); /* a kind this CLI does not know yet */
        return;
    }
    /* TRANSLATORS: access (read, write), purpose and basis are the node's ids, not translated. */
    printf(_("grant to %s: %s, purpose %s, basis %s"), jtext(e, "to"), jtext(e, "access"),
        jtext(e, "purpose"), jtext(e, "basis"));
    json_object *provision = jget(e, "provision");
    if (provision != NULL && json_object_is_type(provision, json_type_string))
        printf(_(", provision %s"), json_object_get_string(provision));
    json_object *end = jget(e, "until");
    if (end != NULL && json_object_is_type(end, json_type_string))
        printf(_(", until %s"), when(e, "until", until));
    printf(_(", by %s"), jtext(e, "operator"));
    json_object *user = jget(e, "unix_user");
    if (user != NULL && json_object_is_type(user, json_type_string))
        printf(_(" (unix user %s)"), json_object_get_string(user));
    json_object *evidence = jget(e, "evidence");
    if (evidence != NULL && json_object_is_type(evidence, json_type_string))
        printf(_(", evidence %s"), json_object_get_string(evidence));
    json_object *state = with_state ? jget(e, "state") : NULL;
    if (state != NULL && json_object_is_type(state, json_type_string)
        && strcmp(json_object_get_string(state), "active") != 0)
        printf(" [%s]", json_object_get_string(state));
}

/* The access log of a scope, under the key "SCOPE access", one entry a line. */
static void print_access(const char *scope, int width, json_object *entries)
{
    char key[PROTO_SCOPE_NAME_MAX + 64];
    snprintf(key, sizeof key, _("%s access"), scope);
    for (size_t i = 0; i < jlen(entries); i++) {
        pad_print(i == 0 ? key : "", width);
        printf("  ");
        print_access_entry(json_object_array_get_idx(entries, i), true);
        printf("\n");
    }
}

/* The width of the key column: every "scope.field", "scope access" and "owner". */
/* How a field is named in case show: scope.field, or its label (with --labels: the node's
 * "labels" map; a field without one keeps its name). conflicts stay keyed by scope.field. */
static const char *field_key(json_object *labels, const char *sname, const char *fname, char *key,
    size_t size, char *path, size_t psize)
{
    snprintf(path, psize, "%s.%s", sname, fname);
    json_object *l = jget(labels, path);
    snprintf(key, size, "%s", l != NULL ? json_object_get_string(l) : path);
    return key;
}

static int show_width(json_object *scopes, json_object *access, json_object *labels)
{
    char key[256], path[2 * PROTO_SCOPE_NAME_MAX + 64];
    int width = 10;
    if (scopes != NULL && json_object_is_type(scopes, json_type_object)) {
        json_object_object_foreach(scopes, sname, fields)
        {
            if (fields != NULL && json_object_is_type(fields, json_type_object)) {
                json_object_object_foreach(fields, fname, fvalue)
                {
                    (void)fvalue;
                    field_key(labels, sname, fname, key, sizeof key, path, sizeof path);
                    if (text_width(key) > width)
                        width = text_width(key);
                }
            }
        }
    }
    if (access != NULL && json_object_is_type(access, json_type_object)) {
        json_object_object_foreach(access, aname, entries)
        {
            snprintf(key, sizeof key, _("%s access"), aname);
            if (jlen(entries) > 0 && text_width(key) > width)
                width = text_width(key);
        }
    }
    return width;
}

static void render_case_show(json_object *p, const char *const *sent, size_t nsent)
{
    (void)nsent;
    json_object *scopes = jget(p, "scopes");
    json_object *conflicts = jget(p, "conflicts");
    json_object *access = jget(p, "access");
    json_object *labels = jget(p, "labels");
    char key[256], path[2 * PROTO_SCOPE_NAME_MAX + 64];
    int width = show_width(scopes, access, labels);
    printf(_("case %s\n"), jget(p, "id") != NULL ? jtext(p, "id") : sent[0]);
    if (jget(p, "owner") != NULL) {
        pad_print(_("owner"), width);
        printf("  %s\n", jtext(p, "owner"));
    }
    if (scopes != NULL && json_object_is_type(scopes, json_type_object)) {
        json_object_object_foreach(scopes, sname, fields)
        {
            if (fields == NULL || !json_object_is_type(fields, json_type_object)
                || json_object_object_length(fields) == 0) {
                pad_print(sname, width);
                printf("  %s", _("(readable, no fields)\n"));
            } else {
                json_object_object_foreach(fields, fname, fvalue)
                {
                    field_key(labels, sname, fname, key, sizeof key, path, sizeof path);
                    print_field(key, width, fvalue, jget(conflicts, path));
                }
            }
            print_access(sname, width, jget(access, sname));
        }
    }
    /* Scopes whose access ended here and whose data this node keeps, closed (public task). */
    json_object *closed = jget(p, "closed");
    if (closed != NULL && json_object_is_type(closed, json_type_object)) {
        json_object_object_foreach(closed, cname, x)
        {
            char since[CLI_TIME_TEXT_SIZE];
            pad_print(cname, width);
            printf(_("  closed since %s (%s by %s, basis %s): kept, receives nothing new\n"),
                when(x, "since", since), jtext(x, "reason"), jtext(x, "owner"), jtext(x, "basis"));
        }
    }
    /* An access log of a scope without fields here (not expected from a node, shown anyway). */
    if (access != NULL && json_object_is_type(access, json_type_object)) {
        json_object_object_foreach(access, aname, entries)
        {
            if (jget(scopes, aname) == NULL)
                print_access(aname, width, entries);
        }
    }
}

/* A command whose one argument is a case id: checked here, then the request. */
static cli_err case_request(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv,
    const char *request, render_fn render)
{
    const char *pos[1];
    size_t n;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    cli_err err = cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 1, 1, &n);
    if (err != CLI_OK || (err = case_and_field(ctx, cmd, pos, n, id)) != CLI_OK)
        return err;
    return exchange(ctx, request, pos, 1, NULL, render);
}

cli_err cli__case_show(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    bool labels = false;
    const cli__opt opts[] = { { "labels", NULL, &labels } };
    const char *pos[1];
    size_t n;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 1, pos, 1, 1, &n);
    if (err != CLI_OK || (err = case_and_field(ctx, cmd, pos, n, id)) != CLI_OK)
        return err;
    const char *args[] = { id, "labels" };
    return exchange(ctx, "case.show", args, labels ? 2 : 1, NULL, render_case_show);
}

/* ---------------------------------------------------------------------------------------- */
/* consent list                                                                              */

static void render_consent_list(json_object *p, const char *const *sent, size_t nsent)
{
    (void)sent;
    (void)nsent;
    json_object *grants = jget(p, "grants");
    printf(_("case %s, owner %s\n"), jtext(p, "id"), jtext(p, "owner"));
    if (jlen(grants) == 0) {
        printf("%s", _("no grant in the access logs this node can read\n"));
        return;
    }
    /* TRANSLATORS: the columns of consent list (18 and 12 characters). */
    printf("%-18s  %-12s  %s\n", _("STATE"), _("SCOPE"), _("ENTRY"));
    for (size_t i = 0; i < jlen(grants); i++) {
        json_object *g = json_object_array_get_idx(grants, i);
        printf("%-18s  %-12s  ", jtext(g, "state"), jtext(g, "scope"));
        print_access_entry(g, false); /* the state is said in its column */
        printf("\n");
    }
}

cli_err cli__consent_list(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    return case_request(ctx, cmd, argc, argv, "consent.list", render_consent_list);
}

/* ---------------------------------------------------------------------------------------- */
/* case list                                                                                 */

/* "COGNOME NOME" of a case row (either may be absent), in buf. */
static const char *person_name(json_object *c, char *buf, size_t size)
{
    json_object *cg = jget(c, "cognome"), *nm = jget(c, "nome");
    bool hc = cg != NULL && json_object_is_type(cg, json_type_string);
    bool hn = nm != NULL && json_object_is_type(nm, json_type_string);
    if (!hc && !hn)
        return NO_VALUE;
    snprintf(buf, size, "%s%s%s", hc ? json_object_get_string(cg) : "", hc && hn ? " " : "",
        hn ? json_object_get_string(nm) : "");
    return buf;
}

static void render_case_list(json_object *p, const char *const *sent, size_t nsent)
{
    json_object *cases = jget(p, "cases");
    if (jlen(cases) == 0) {
        printf("%s\n",
            nsent > 0 && sent[0][0] ? _("no readable case matches --where")
                                    : _("no case readable on this node"));
        return;
    }
    int width = text_width(_("NAME")), owidth = text_width(_("OWNER"));
    char name[420];
    for (size_t i = 0; i < jlen(cases); i++) {
        json_object *c = json_object_array_get_idx(cases, i);
        int w = text_width(person_name(c, name, sizeof name)), ow = text_width(jtext(c, "owner"));
        width = w > width ? w : width;
        owidth = ow > owidth ? ow : owidth;
    }
    /* TRANSLATORS: the columns of case list and case find (BORN: 10 characters, LAST CHANGE:
       25, CASE: 37; no accented letters). */
    pad_print(_("NAME"), width);
    printf("  %-10s  ", _("BORN"));
    pad_print(_("OWNER"), owidth);
    printf("  %-25s  %-37s  %s\n", _("LAST CHANGE"), _("CASE"), _("SCOPES"));
    for (size_t i = 0; i < jlen(cases); i++) {
        json_object *c = json_object_array_get_idx(cases, i);
        json_object *scopes = jget(c, "scopes");
        char at[CLI_TIME_TEXT_SIZE];
        pad_print(person_name(c, name, sizeof name), width);
        printf("  %-10s  ", jtext(c, "data_nascita"));
        pad_print(jtext(c, "owner"), owidth);
        printf("  %-25s  %-37s  ", when(c, "last_change", at), jtext(c, "id"));
        for (size_t j = 0; j < jlen(scopes); j++)
            printf("%s%s", j > 0 ? "," : "", plain(json_object_array_get_idx(scopes, j)));
        printf("\n");
    }
    json_object *total = jget(p, "total");
    if (total != NULL && json_object_get_int64(total) > (int64_t)jlen(cases))
        printf(_("%zu of %s cases shown (--limit)\n"), jlen(cases), jtext(p, "total"));
}

cli_err cli__case_list(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *where = NULL, *sort = NULL, *limit = NULL;
    const cli__opt opts[]
        = { { "where", &where, NULL }, { "sort", &sort, NULL }, { "limit", &limit, NULL } };
    const char *pos[1];
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 3, pos, 0, 0, &n);
    if (err != CLI_OK)
        return err;
    if (sort != NULL && strcmp(sort, "name") != 0 && strcmp(sort, "birth") != 0
        && strcmp(sort, "change") != 0)
        return cli__usage(ctx, cmd, _("--sort must be name, birth or change (got '%s')"), sort);
    if (where != NULL
        && (strchr(where, '=') == NULL || strchr(where, '.') == NULL
            || strchr(where, '.') > strchr(where, '=')))
        return cli__usage(ctx, cmd, _("--where takes scope.field=VALUE (got '%s')"), where);
    uint64_t lim = 0;
    char lims[24] = "";
    if (limit != NULL) {
        if ((err = cli__parse_u64(ctx, cmd, "limit", limit, 1, 1000000, &lim)) != CLI_OK)
            return err;
        snprintf(lims, sizeof lims, "%" PRIu64, lim);
    }
    const char *args[3] = { where != NULL ? where : "", sort != NULL ? sort : "", lims };
    /* without options, the request of old: no arguments after the operator */
    bool plain_list = where == NULL && sort == NULL && limit == NULL;
    return exchange(ctx, "case.list", args, plain_list ? 0 : 3, NULL, render_case_list);
}

/* ---------------------------------------------------------------------------------------- */
/* case find                                                                                 */

static void render_case_find(json_object *p, const char *const *sent, size_t nsent)
{
    (void)nsent;
    json_object *cases = jget(p, "cases");
    if (jlen(cases) == 0) {
        printf(json_object_get_boolean(jget(p, "fuzzy"))
                ? _("no readable case matches '%s'\n")
                : _("no readable case matches '%s' (try --fuzzy for spelling variants)\n"),
            sent[0]);
        return;
    }
    int width = text_width(_("NAME"));
    char name[420];
    for (size_t i = 0; i < jlen(cases); i++) {
        int w = text_width(person_name(json_object_array_get_idx(cases, i), name, sizeof name));
        if (w > width)
            width = w;
    }
    pad_print(_("NAME"), width);
    printf("  %-10s  %-16s  %-37s  %s\n", _("BORN"), "CODICE FISCALE", _("CASE"), _("MATCHED"));
    for (size_t i = 0; i < jlen(cases); i++) {
        json_object *c = json_object_array_get_idx(cases, i);
        pad_print(person_name(c, name, sizeof name), width);
        printf("  %-10s  %-16s  %-37s  %s\n", jtext(c, "data_nascita"), jtext(c, "codice_fiscale"),
            jtext(c, "id"), jtext(c, "matched"));
    }
    if (json_object_get_boolean(jget(p, "more")))
        printf(
            _("more cases match: narrow the query or raise --limit (now %s)\n"), jtext(p, "limit"));
}

cli_err cli__case_find(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *limit = NULL;
    bool fuzzy = false;
    const cli__opt opts[] = { { "limit", &limit, NULL }, { "fuzzy", NULL, &fuzzy } };
    const char **pos = calloc((size_t)argc + 1, sizeof(*pos));
    if (pos == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 2, pos, 1, 1, &n);
    uint64_t lim = 20;
    if (err == CLI_OK && limit != NULL)
        err = cli__parse_u64(ctx, cmd, "limit", limit, 1, 1000, &lim);
    if (err == CLI_OK) {
        char lims[24];
        snprintf(lims, sizeof lims, "%" PRIu64, lim);
        const char *args[3] = { pos[0], fuzzy ? "fuzzy" : "", lims };
        err = exchange(ctx, "case.find", args, 3, NULL, render_case_find);
    }
    free(pos);
    return err;
}

#define REASON_MAX 255 /* the node's bound on a revocation's reason */

/* ---------------------------------------------------------------------------------------- */
/* consent grant                                                                             */

static void render_consent_grant(json_object *p, const char *const *sent, size_t nsent)
{
    json_object *scopes = jget(p, "scopes");
    /* TRANSLATORS: the second %s is read or write (not translated); the scopes follow. */
    printf(_("%s: %s access to "), jget(p, "id") != NULL ? jtext(p, "id") : sent[0],
        jget(p, "access") != NULL ? jtext(p, "access") : sent[5]);
    if (scopes != NULL) {
        for (size_t i = 0; i < jlen(scopes); i++)
            printf("%s%s", i > 0 ? "," : "", plain(json_object_array_get_idx(scopes, i)));
    } else {
        printf("%s", sent[2]);
    }
    printf(_(" granted to %s (purpose %s, basis %s"),
        jget(p, "to") != NULL ? jtext(p, "to") : sent[1],
        jget(p, "purpose") != NULL ? jtext(p, "purpose") : sent[3],
        jget(p, "basis") != NULL ? jtext(p, "basis") : sent[4]);
    json_object *provision = jget(p, "provision"); /* the answer's, else what was sent */
    if (provision != NULL && json_object_is_type(provision, json_type_string))
        printf(_(", provision %s"), json_object_get_string(provision));
    else if (provision == NULL && nsent > 8 && sent[8][0] != '\0')
        printf(_(", provision %s"), sent[8]);
    json_object *until = jget(p, "until");
    if (until != NULL && !json_object_is_type(until, json_type_null))
        printf(_(", until %s"), plain(until));
    printf(")\n");
}

/* --scopes: comma-separated scope names, none named twice (the node checks that they exist). */
static cli_err check_scopes(cli__ctx *ctx, const cli__cmd *cmd, const char *list)
{
    for (const char *name = list;;) {
        const char *comma = strchr(name, ',');
        size_t n = comma != NULL ? (size_t)(comma - name) : strlen(name);
        if (!proto_scope_name_valid(name, n))
            return cli__usage(ctx, cmd,
                _("--scopes '%s' is not a comma-separated list of scope names (e.g. "
                  "lingua,anagrafica)"),
                list);
        for (const char *seen = list; seen < name; seen = strchr(seen, ',') + 1)
            if (strncmp(seen, name, n) == 0 && seen[n] == ',')
                return cli__usage(ctx, cmd, _("--scopes names %.*s twice"), (int)n, name);
        if (comma == NULL)
            return CLI_OK;
        name = comma + 1;
    }
}

cli_err cli__consent_grant(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *to = NULL, *scopes = NULL, *purpose = NULL, *basis = NULL, *access = NULL,
               *until = NULL, *evidence = NULL, *provision = NULL;
    const cli__opt opts[] = {
        { "to", &to, NULL },
        { "scopes", &scopes, NULL },
        { "purpose", &purpose, NULL },
        { "basis", &basis, NULL },
        { "access", &access, NULL },
        { "until", &until, NULL },
        { "evidence", &evidence, NULL },
        { "provision", &provision, NULL },
    };
    const char *pos[1];
    size_t n;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    cli_err err
        = cli__parse(ctx, cmd, argc, argv, opts, sizeof opts / sizeof opts[0], pos, 1, 1, &n);
    if (err != CLI_OK)
        return err;
    if (to == NULL || scopes == NULL || purpose == NULL || basis == NULL)
        return cli__usage(ctx, cmd, _("--to, --scopes, --purpose and --basis are required"));
    if (!proto_org_valid(to, strlen(to)))
        return cli__usage(
            ctx, cmd, _("--to '%s' is not an org id ([a-z0-9-], 1-32 characters)"), to);
    if ((err = check_scopes(ctx, cmd, scopes)) != CLI_OK)
        return err;
    if (!proto_org_valid(purpose, strlen(purpose)))
        return cli__usage(ctx, cmd,
            _("--purpose '%s' is not a purpose id ([a-z0-9-], 1-32 characters)"), purpose);
    if (proto_basis_parse(basis, strlen(basis)) == 0)
        return cli__usage(ctx, cmd,
            _("--basis '%s' is not one of public-task legal-obligation consent explicit-consent"),
            basis);
    if (access == NULL)
        access = "read";
    uint8_t level;
    if (!proto_access_parse(access, strlen(access), &level) || level == PROTO_ACCESS_NONE)
        return cli__usage(ctx, cmd, _("--access '%s' is not read or write"), access);
    proto_date day;
    if (until != NULL && proto_date_parse(until, strlen(until), &day) != PROTO_OK)
        return cli__usage(ctx, cmd, _("--until '%s' is not a date YYYY-MM-DD"), until);
    /* Empty evidence is none; the node bounds its length. */
    if (evidence != NULL && evidence[0] != '\0'
        && !proto_text_valid(evidence, strlen(evidence), PROTO_TEXT_MAX))
        return cli__usage(ctx, cmd,
            _("--evidence must be at most %d bytes of text without control characters, and not "
              "only spaces"),
            PROTO_TEXT_MAX);
    /* Empty provision is none, like evidence. */
    if (provision != NULL && provision[0] != '\0'
        && !proto_text_valid(provision, strlen(provision), PROVISION_MAX))
        return cli__usage(ctx, cmd,
            _("--provision must be at most %d bytes of text without control characters, and not "
              "only spaces (e.g. \"D.Lgs. 286/1998 art. 4-bis\")"),
            PROVISION_MAX);
    uint8_t b = (uint8_t)proto_basis_parse(basis, strlen(basis));
    if ((provision == NULL || provision[0] == '\0')
        && (b == PROTO_BASIS_PUBLIC_TASK || b == PROTO_BASIS_LEGAL_OBLIGATION))
        return cli__usage(ctx, cmd,
            _("--basis %s needs --provision TEXT: the legal provision the grant rests on (e.g. "
              "\"D.Lgs. 286/1998 art. 4-bis\")"),
            basis);
    if ((err = case_id(ctx, pos[0], id)) != CLI_OK)
        return err;
    /* The order of CONTROL.md: case, org, scopes, purpose, basis, access, until, evidence,
     * provision. */
    const char *args[] = { id, to, scopes, purpose, basis, access, until != NULL ? until : "",
        evidence != NULL ? evidence : "", provision != NULL ? provision : "" };
    return exchange(
        ctx, "consent.grant", args, sizeof args / sizeof args[0], NULL, render_consent_grant);
}

/* ---------------------------------------------------------------------------------------- */
/* consent revoke, consent downgrade                                                         */

static void render_consent_revoke(json_object *p, const char *const *sent, size_t nsent)
{
    (void)nsent;
    json_object *scopes = jget(p, "scopes");
    bool down = strcmp(sent[3], "read") == 0;
    for (size_t i = 0; scopes != NULL && i < jlen(scopes); i++) {
        json_object *o = json_object_array_get_idx(scopes, i), *epoch = jget(o, "new_epoch");
        printf(down ? _("%s: downgraded to read for %s on %s (access-log entry %s)")
                    : _("%s: access revoked for %s on %s (access-log entry %s)"),
            jget(p, "id") != NULL ? jtext(p, "id") : sent[0], sent[1], jtext(o, "scope"),
            jtext(o, "entry"));
        if (epoch != NULL && !json_object_is_type(epoch, json_type_null))
            printf(_("; new key, epoch %s, sent to the remaining holders"), plain(epoch));
        printf("\n");
    }
}

static cli_err revoke(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv, const char *left)
{
    const char *from = NULL, *scopes = NULL, *reason = NULL;
    const cli__opt opts[] = {
        { "from", &from, NULL },
        { "scopes", &scopes, NULL },
        { "reason", &reason, NULL },
    };
    const char *pos[1];
    size_t n;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    cli_err err
        = cli__parse(ctx, cmd, argc, argv, opts, sizeof opts / sizeof opts[0], pos, 1, 1, &n);
    if (err != CLI_OK)
        return err;
    if (from == NULL)
        return cli__usage(ctx, cmd, _("--from ORG is required"));
    if (!proto_org_valid(from, strlen(from)))
        return cli__usage(
            ctx, cmd, _("--from '%s' is not an org id ([a-z0-9-], 1-32 characters)"), from);
    if (scopes != NULL && (err = check_scopes(ctx, cmd, scopes)) != CLI_OK)
        return err;
    if (reason != NULL && reason[0] != '\0'
        && !proto_text_valid(reason, strlen(reason), REASON_MAX))
        return cli__usage(ctx, cmd,
            _("--reason must be at most %d bytes of text without control characters, and not only "
              "spaces"),
            REASON_MAX);
    if ((err = case_id(ctx, pos[0], id)) != CLI_OK)
        return err;
    /* The order of CONTROL.md: case, org, scopes (empty: all), access left, reason. */
    const char *args[]
        = { id, from, scopes != NULL ? scopes : "", left, reason != NULL ? reason : "" };
    return exchange(
        ctx, "consent.revoke", args, sizeof args / sizeof args[0], NULL, render_consent_revoke);
}

cli_err cli__consent_revoke(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    return revoke(ctx, cmd, argc, argv, "none");
}

cli_err cli__consent_downgrade(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    return revoke(ctx, cmd, argc, argv, "read");
}

/* ---------------------------------------------------------------------------------------- */
/* consent withdraw, consent drop                                                            */

static void render_consent_note(json_object *p, const char *const *sent, size_t nsent)
{
    (void)nsent;
    json_object *scopes = jget(p, "scopes");
    bool applied = strcmp(jtext(p, "state"), "applied") == 0;
    printf("%s: ", jget(p, "id") != NULL ? jtext(p, "id") : sent[0]);
    for (size_t i = 0; i < jlen(scopes); i++)
        printf("%s%s", i > 0 ? "," : "", plain(json_object_array_get_idx(scopes, i)));
    if (applied)
        printf(_(": consent withdrawn, %s's access revoked here (this node owns the case)\n"),
            jtext(p, "grantee"));
    else
        printf(nsent > 2 ? _(": withdrawal of %s's access sent to the owner, %s; it ends the grant "
                             "when it receives it (a grant on another basis than consent waits "
                             "for an operator there)\n")
                         : _(": drop of %s's access sent to the owner, %s; it ends the grant when "
                             "it receives it (a grant on another basis than consent waits for an "
                             "operator there)\n"),
            jtext(p, "grantee"), jtext(p, "owner"));
}

cli_err cli__consent_withdraw(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *scopes = NULL, *to = NULL, *evidence = NULL, *owner = NULL;
    const cli__opt opts[] = {
        { "scopes", &scopes, NULL },
        { "to", &to, NULL },
        { "evidence", &evidence, NULL },
        { "owner", &owner, NULL },
    };
    const char *pos[1];
    size_t n;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    cli_err err
        = cli__parse(ctx, cmd, argc, argv, opts, sizeof opts / sizeof opts[0], pos, 1, 1, &n);
    if (err != CLI_OK)
        return err;
    if (scopes == NULL || to == NULL || evidence == NULL)
        return cli__usage(ctx, cmd, _("--scopes, --to and --evidence are required"));
    if ((err = check_scopes(ctx, cmd, scopes)) != CLI_OK)
        return err;
    if (!proto_org_valid(to, strlen(to))
        || (owner != NULL && !proto_org_valid(owner, strlen(owner))))
        return cli__usage(
            ctx, cmd, _("--to and --owner take an org id ([a-z0-9-], 1-32 characters)"));
    if (evidence[0] == '\0' || !proto_text_valid(evidence, strlen(evidence), REASON_MAX))
        return cli__usage(ctx, cmd,
            _("--evidence must be at most %d bytes of text without control characters, and not "
              "only spaces (a reference to the signed form or protocol number)"),
            REASON_MAX);
    if ((err = case_id(ctx, pos[0], id)) != CLI_OK)
        return err;
    /* The order of CONTROL.md: case, scopes, org, evidence, owner or empty. */
    const char *args[] = { id, scopes, to, evidence, owner != NULL ? owner : "" };
    return exchange(
        ctx, "consent.withdraw", args, sizeof args / sizeof args[0], NULL, render_consent_note);
}

cli_err cli__consent_drop(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *scopes = NULL;
    const cli__opt opts[] = { { "scopes", &scopes, NULL } };
    const char *pos[1];
    size_t n;
    char id[PROTO_CASE_ID_TEXT_SIZE];
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 1, pos, 1, 1, &n);
    if (err != CLI_OK)
        return err;
    if (scopes == NULL)
        return cli__usage(ctx, cmd, _("--scopes is required"));
    if ((err = check_scopes(ctx, cmd, scopes)) != CLI_OK)
        return err;
    if ((err = case_id(ctx, pos[0], id)) != CLI_OK)
        return err;
    const char *args[] = { id, scopes };
    return exchange(ctx, "consent.drop", args, 2, NULL, render_consent_note);
}

/* ---------------------------------------------------------------------------------------- */
/* manifest import                                                                           */

static void render_manifest_import(json_object *p, const char *const *sent, size_t nsent)
{
    (void)sent;
    (void)nsent;
    json_object *again = jget(p, "already_in_force");
    if (again != NULL && json_object_get_boolean(again))
        printf(_("manifest version %s is already in force (%s members): nothing changed\n"),
            jtext(p, "version"), jtext(p, "members"));
    else
        printf(_("manifest version %s imported (%s members)\n"), jtext(p, "version"),
            jtext(p, "members"));
}

cli_err cli__manifest_import(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *pos[1];
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, NULL, 0, pos, 1, 1, &n);
    if (err != CLI_OK)
        return err;
    /* Read before cli__call changes directory: FILE is relative to where the operator is. */
    uint8_t *bytes;
    size_t len;
    if ((err = cli__read_file(ctx, pos[0], PROTO_MAX_MESSAGE_DEFAULT, &bytes, &len)) != CLI_OK)
        return err;
    unsigned kind = 0;
    if (proto_peek(bytes, len, NULL, &kind, NULL) != PROTO_OK || kind != PROTO_K_MANIFEST) {
        free(bytes);
        return cli__fail(ctx, CLI_EINPUT,
            _("%s is not a signed manifest (write one with patto network sign ADMIN --out FILE)"),
            pos[0]);
    }
    proto_bytes b = { bytes, len };
    err = exchange(ctx, "manifest.import", NULL, 0, &b, render_manifest_import);
    free(bytes);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* store compact                                                                             */

/* A size in bytes for people: "812.4 MiB" (KiB below a MiB, bytes below a KiB). */
static void size_text(json_object *v, char *out, size_t n)
{
    if (v == NULL || !json_object_is_type(v, json_type_int)) {
        snprintf(out, n, NO_VALUE);
        return;
    }
    int64_t b = json_object_get_int64(v);
    if (b >= 1024 * 1024)
        snprintf(out, n, "%.1f MiB", (double)b / (1024.0 * 1024.0));
    else if (b >= 1024)
        snprintf(out, n, "%.1f KiB", (double)b / 1024.0);
    else
        snprintf(out, n, "%lld bytes", (long long)b);
}

static void render_store_compact(json_object *p, const char *const *sent, size_t nsent)
{
    (void)sent;
    (void)nsent;
    char before[64], after[64], needed[64];
    size_text(jget(p, "bytes_before"), before, sizeof before);
    size_text(jget(p, "bytes_after"), after, sizeof after);
    size_text(jget(p, "disk_needed_bytes"), needed, sizeof needed);
    printf(_("store compacted: data.mdb %s -> %s; the node paused %s ms; the copy needed %s of "
             "disk\n"),
        before, after, jtext(p, "pause_ms"), needed);
}

cli_err cli__store_compact(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    return plain_request(ctx, cmd, argc, argv, "store.compact", render_store_compact);
}

/* ---------------------------------------------------------------------------------------- */
/* inbox                                                                                     */

static void render_alerts(json_object *alerts)
{
    for (size_t i = 0; i < jlen(alerts); i++)
        printf(_("ALERT  %s\n"), jtext(json_object_array_get_idx(alerts, i), "message"));
}

static void render_inbox_row(json_object *it)
{
    char at[CLI_TIME_TEXT_SIZE];
    const char *kind = jtext(it, "kind");
    json_object *fresh = jget(it, "new");
    /* TRANSLATORS: the mark of a row not read yet in patto inbox. */
    const char *mark = _("NEW");
    int mw = text_width(mark) > 3 ? text_width(mark) : 3;
    pad_print(fresh != NULL && json_object_get_boolean(fresh) ? mark : "", mw);
    printf("  %-25s  %-37s  ", when(it, "at", at), jtext(it, "case"));
    if (strcmp(kind, "shared") == 0) {
        /* TRANSLATORS: access (read, write), purpose and basis are the node's ids. */
        printf(_("%s shared by %s: %s, purpose %s, basis %s"), jtext(it, "scope"), jtext(it, "org"),
            jtext(it, "access"), jtext(it, "purpose"), jtext(it, "basis"));
        if (jget(it, "until") != NULL) {
            char until[CLI_TIME_TEXT_SIZE];
            printf(_(", until %s"), when(it, "until", until));
        }
    } else if (strcmp(kind, "narrowed") == 0) {
        /* TRANSLATORS: the %s in brackets is the node's reason (revoked, expired, ...). */
        printf(strcmp(jtext(it, "access"), "read") == 0 ? _("%s: narrowed to read by %s (%s)")
                                                        : _("%s: access ended by %s (%s)"),
            jtext(it, "scope"), jtext(it, "org"), jtext(it, "reason"));
    } else if (strcmp(kind, "changed") == 0) {
        json_object *nc = jget(it, "changes");
        unsigned long changes = nc != NULL ? (unsigned long)json_object_get_int64(nc) : 0;
        printf(P_("changed by %s (%s change, the last in %s)",
                   "changed by %s (%s changes, the last in %s)", changes),
            jtext(it, "org"), jtext(it, "changes"), jtext(it, "scope"));
    } else if (strcmp(kind, "withdrawal") == 0 || strcmp(kind, "drop") == 0) {
        printf(strcmp(kind, "drop") == 0
                ? _("drop of %s's access received from %s (scope %s...): see consent list")
                : _("withdrawal of %s's access received from %s (scope %s...): see consent list"),
            jtext(it, "grantee"), jtext(it, "org"), jtext(it, "scope"));
    } else {
        printf("%s", kind); /* a kind this CLI does not know yet */
    }
    printf("\n");
}

static void render_inbox(json_object *p, const char *const *sent, size_t nsent)
{
    (void)sent;
    (void)nsent;
    json_object *items = jget(p, "items");
    render_alerts(jget(p, "alerts"));
    if (jlen(items) == 0)
        printf(_("nothing new for %s (patto inbox --all shows what was read)\n"),
            jtext(p, "operator"));
    for (size_t i = 0; i < jlen(items); i++)
        render_inbox_row(json_object_array_get_idx(items, i));
    json_object *more = jget(p, "more");
    if (more != NULL && json_object_get_int64(more) > 0)
        printf(_("(%s more: --limit N shows more)\n"), jtext(p, "more"));
}

/* --since WHEN: YYYY-MM-DD (from the start of that day in Europe/Rome), or Nm, Nh, Nd ago. */
static cli_err since_ms(cli__ctx *ctx, const cli__cmd *cmd, const char *text, uint64_t *out)
{
    proto_date day;
    size_t n = strlen(text);
    if (proto_date_parse(text, n, &day) == PROTO_OK) {
        *out = proto_rome_day_start_ms(&day);
        return CLI_OK;
    }
    uint64_t unit = n > 1 && text[n - 1] == 'm' ? 60000u
        : n > 1 && text[n - 1] == 'h'           ? 3600000u
        : n > 1 && text[n - 1] == 'd'           ? 86400000u
                                                : 0;
    char num[24];
    uint64_t k = 0;
    if (unit != 0 && n - 1 < sizeof num) {
        memcpy(num, text, n - 1);
        num[n - 1] = '\0';
        if (cli__parse_u64(ctx, cmd, "since", num, 0, 36500, &k) == CLI_OK) {
            uint64_t now = wall_ms(), ago = k * unit;
            *out = now > ago ? now - ago : 0;
            return CLI_OK;
        }
    }
    return cli__usage(
        ctx, cmd, _("--since '%s' is not a date (YYYY-MM-DD) or a time ago (30m, 12h, 7d)"), text);
}

cli_err cli__inbox(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *since = NULL, *limit = NULL;
    bool all = false;
    const cli__opt opts[]
        = { { "since", &since, NULL }, { "limit", &limit, NULL }, { "all", NULL, &all } };
    const char *pos[1];
    size_t n;
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 3, pos, 0, 0, &n);
    if (err != CLI_OK)
        return err;
    char sbuf[24] = "", lbuf[24] = "";
    uint64_t v;
    if (since != NULL) {
        if ((err = since_ms(ctx, cmd, since, &v)) != CLI_OK)
            return err;
        snprintf(sbuf, sizeof sbuf, "%" PRIu64, v);
    }
    if (limit != NULL) {
        if ((err = cli__parse_u64(ctx, cmd, "limit", limit, 1, 100000, &v)) != CLI_OK)
            return err;
        snprintf(lbuf, sizeof lbuf, "%" PRIu64, v);
    }
    const char *args[] = { sbuf, all ? "all" : "new", lbuf };
    return exchange(ctx, "inbox", args, 3, NULL, render_inbox);
}

static void render_inbox_ack(json_object *p, const char *const *sent, size_t nsent)
{
    (void)sent;
    (void)nsent;
    char at[CLI_TIME_TEXT_SIZE];
    printf(_("inbox of %s read up to %s\n"), jtext(p, "operator"), when(p, "acked_at", at));
}

cli_err cli__inbox_ack(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    return plain_request(ctx, cmd, argc, argv, "inbox.ack", render_inbox_ack);
}

/* ---------------------------------------------------------------------------------------- */
/* case log                                                                                  */

/* A value in a change line: a set as "a, b", a timeline's events as their content. */
static void print_log_value(json_object *v)
{
    if (v == NULL || json_object_is_type(v, json_type_null)) {
        printf("%s", _("(none)"));
        return;
    }
    if (!json_object_is_type(v, json_type_array)) {
        printf("%s", plain(v));
        return;
    }
    if (jlen(v) == 0)
        printf("%s", _("(empty)"));
    for (size_t i = 0; i < jlen(v); i++) {
        json_object *x = json_object_array_get_idx(v, i);
        json_object *red = json_object_is_type(x, json_type_object) ? jget(x, "redacted") : NULL;
        printf("%s", i > 0 ? ", " : "");
        if (red != NULL && json_object_get_boolean(red))
            printf(_("(event %s redacted)"), jtext(x, "id"));
        else if (json_object_is_type(x, json_type_object) && jget(x, "event") != NULL)
            printf("%s", plain(jget(x, "event")));
        else
            printf("%s", plain(x));
    }
}

static void render_case_log(json_object *p, const char *const *sent, size_t nsent)
{
    (void)sent;
    (void)nsent;
    json_object *changes = jget(p, "changes");
    printf(_("case %s\n"), jtext(p, "id"));
    if (jlen(changes) == 0)
        printf("%s", _("no change this node can read\n"));
    for (size_t i = 0; i < jlen(changes); i++) {
        json_object *c = json_object_array_get_idx(changes, i);
        char at[CLI_TIME_TEXT_SIZE], name[128];
        snprintf(name, sizeof name, "%s.%s", jtext(c, "scope"), jtext(c, "field"));
        printf("%-25s  %-14s  %-28s  ", when(c, "at", at), jtext(c, "by"), name);
        json_object *old = jget(c, "old"), *nw = jget(c, "new");
        json_object *first = jlen(nw) > 0 ? json_object_array_get_idx(nw, 0) : NULL;
        if (old != NULL) {
            print_log_value(old);
            printf(" -> ");
        } else if (first != NULL && json_object_is_type(first, json_type_object)) {
            printf("+ "); /* a timeline's events */
        } else {
            printf("%s -> ", _("(none)"));
        }
        print_log_value(nw);
        printf("\n");
        json_object *conflict = jget(c, "conflict");
        for (size_t k = 0; k < jlen(conflict); k++) {
            json_object *x = json_object_array_get_idx(conflict, k);
            char xat[CLI_TIME_TEXT_SIZE];
            const char *head = _("CONFLICT:");
            printf("%-25s  %-14s  %-28s  ", "", "", "");
            pad_print(k == 0 ? head : "", text_width(head));
            printf(_(" %s (by %s, %s)\n"), jtext(x, "value"), jtext(x, "by"), when(x, "at", xat));
        }
    }
    json_object *more = jget(p, "more");
    if (more != NULL && json_object_get_int64(more) > 0)
        printf(_("(%s older changes: --limit N shows more)\n"), jtext(p, "more"));
}

cli_err cli__case_log(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *limit = NULL;
    const cli__opt opts[] = { { "limit", &limit, NULL } };
    const char *pos[2];
    size_t n;
    char id[PROTO_CASE_ID_TEXT_SIZE], lbuf[24] = "";
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 1, pos, 1, 2, &n);
    if (err != CLI_OK || (err = case_and_field(ctx, cmd, pos, n, id)) != CLI_OK)
        return err;
    uint64_t v;
    if (limit != NULL) {
        if ((err = cli__parse_u64(ctx, cmd, "limit", limit, 1, 10000, &v)) != CLI_OK)
            return err;
        snprintf(lbuf, sizeof lbuf, "%" PRIu64, v);
    }
    const char *args[] = { id, n == 2 ? pos[1] : "", lbuf };
    return exchange(ctx, "case.log", args, 3, NULL, render_case_log);
}
