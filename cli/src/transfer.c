/*
 * transfer.c - patto import (CSV or NDJSON into the node, in batches of case.batch) and patto
 * case export / patto export --all (what the node holds, for the beneficiary or for a re-import)
 * (cli/README.md, "Import and export"). CSV is read with libcsv, Windows-1252 converted with
 * iconv, JSON with json-c; every value is checked by the node's schema (case.batch dry_run)
 * before anything is written.
 */
#define _XOPEN_SOURCE 700 /* realpath */
#include "internal.h"

#include <csv.h>
#include <ctype.h>
#include <errno.h>
#include <iconv.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define IMPORT_FILE_MAX (1024u * 1024u * 1024u) /* bytes of an import file */
#define BATCH_DEFAULT 1000
#define BATCH_MAX 1000 /* the node's NODE_BATCH_MAX */
#define EDITS_MAX 256  /* per row: the node's NODE_BATCH_EDITS_MAX */
#define REFUSED_SHOWN 100

/* ---------------------------------------------------------------------------------------- */
/* Small helpers                                                                             */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static json_object *jmember(json_object *o, const char *key)
{
    json_object *v = NULL;
    if (o == NULL || !json_object_is_type(o, json_type_object)
        || !json_object_object_get_ex(o, key, &v))
        return NULL;
    return v;
}

/* The node's control socket is entered with chdir(DATA) at each call: make DATA absolute
 * first, so that the second call finds it too. */
static void absolute_dir(cli__ctx *ctx, char buf[PATH_MAX])
{
    if (ctx->dir != NULL && ctx->dir[0] != '\0' && realpath(ctx->dir, buf) != NULL)
        ctx->dir = buf;
}

static char *xstrdup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (p != NULL) {
        memcpy(p, s, n);
        p[n] = '\0';
    }
    return p;
}

static void trim(char **s)
{
    char *p = *s;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n')
        p++;
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n'))
        p[--n] = '\0';
    *s = p;
}

/* Length of the valid UTF-8 prefix of s (n bytes). */
static size_t utf8_valid_prefix(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t k = c < 0x80      ? 0
            : (c & 0xE0) == 0xC0 ? 1
            : (c & 0xF0) == 0xE0 ? 2
            : (c & 0xF8) == 0xF0 ? 3
                                 : 9;
        if (k == 9 || (k == 1 && c < 0xC2) || (k == 3 && c > 0xF4) || i + k >= n + (k == 0))
            return i;
        unsigned cp = k == 0 ? c : c & (0x3Fu >> k);
        for (size_t j = 1; j <= k; j++) {
            if (i + j >= n || (s[i + j] & 0xC0) != 0x80)
                return i;
            cp = (cp << 6) | (s[i + j] & 0x3Fu);
        }
        if ((k == 2 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)))
            || (k == 3 && (cp < 0x10000 || cp > 0x10FFFF)))
            return i;
        i += k + 1;
    }
    return n;
}

static size_t line_of(const char *s, size_t off)
{
    size_t line = 1;
    for (size_t i = 0; i < off; i++)
        line += s[i] == '\n';
    return line;
}

/* The file's bytes as UTF-8 without a BOM (*out owned). Errors: CLI_EINPUT naming the line. */
static cli_err to_utf8(cli__ctx *ctx, const char *path, const uint8_t *in, size_t len, bool cp1252,
    char **out, size_t *outlen)
{
    if (!cp1252) {
        if (len >= 3 && in[0] == 0xEF && in[1] == 0xBB && in[2] == 0xBF) {
            in += 3;
            len -= 3;
        }
        size_t ok = utf8_valid_prefix(in, len);
        if (ok != len)
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: line %zu is not UTF-8 (byte 0x%02x); if Excel saved it as \"CSV "
                  "(separato da ;)\", give --encoding windows-1252"),
                path, line_of((const char *)in, ok), in[ok]);
        if ((*out = xstrdup((const char *)in, len)) == NULL)
            return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        *outlen = len;
        return CLI_OK;
    }
    iconv_t cd = iconv_open("UTF-8", "WINDOWS-1252");
    if (cd == (iconv_t)-1)
        return cli__fail(
            ctx, CLI_EINTERNAL, _("iconv cannot convert from Windows-1252: %s"), strerror(errno));
    size_t cap = len * 3 + 1;
    char *buf = malloc(cap);
    if (buf == NULL) {
        iconv_close(cd);
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    }
    char *ip = (char *)(uintptr_t)in, *op = buf;
    size_t il = len, ol = cap - 1;
    cli_err err = CLI_OK;
    if (iconv(cd, &ip, &il, &op, &ol) == (size_t)-1) {
        size_t off = (size_t)(ip - (const char *)in);
        err = cli__fail(ctx, CLI_EINPUT,
            _("%s: line %zu: byte 0x%02x is not a Windows-1252 character"), path,
            line_of((const char *)in, off), off < len ? in[off] : 0);
        free(buf);
        buf = NULL;
    }
    iconv_close(cd);
    if (err != CLI_OK)
        return err;
    *op = '\0';
    *out = buf;
    *outlen = (size_t)(op - buf);
    return CLI_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* The node's schema                                                                         */

/* The field's object in the schema answer, and its scope's (labels), or NULL. */
static json_object *schema_field(
    json_object *schema, const char *scope, const char *field, json_object **scope_out)
{
    json_object *scopes = jmember(schema, "scopes");
    size_t ns = scopes != NULL && json_object_is_type(scopes, json_type_array)
        ? json_object_array_length(scopes)
        : 0;
    for (size_t i = 0; i < ns; i++) {
        json_object *s = json_object_array_get_idx(scopes, i);
        const char *name = cli__json_str(s, "name");
        if (name == NULL || strcmp(name, scope) != 0)
            continue;
        if (scope_out != NULL)
            *scope_out = s;
        if (field == NULL)
            return s;
        json_object *fields = jmember(s, "fields");
        size_t nf = fields != NULL && json_object_is_type(fields, json_type_array)
            ? json_object_array_length(fields)
            : 0;
        for (size_t j = 0; j < nf; j++) {
            json_object *f = json_object_array_get_idx(fields, j);
            const char *fname = cli__json_str(f, "name");
            if (fname != NULL && strcmp(fname, field) == 0)
                return f;
        }
        return NULL;
    }
    return NULL;
}

/* "scope.field" split into its parts; false when it is not of that shape. */
static bool split_name(const char *name, char scope[64], char field[64])
{
    const char *dot = strchr(name, '.');
    if (dot == NULL || dot == name || (size_t)(dot - name) >= 64 || strlen(dot + 1) == 0
        || strlen(dot + 1) >= 64 || strchr(dot + 1, '.') != NULL)
        return false;
    memcpy(scope, name, (size_t)(dot - name));
    scope[dot - name] = '\0';
    strcpy(field, dot + 1);
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Rows                                                                                      */

typedef struct row {
    size_t line;
    uint32_t grants; /* the map's grants this row asks for (bit i: grant i) */
    char id[64];     /* its case, once the node has answered (created or exists) */
    bool existed;    /* imported before (its grants may stand already) */
    char *key;       /* the identifier (owned), or NULL */
    char **edit;     /* "scope.field=V" etc. (owned) */
    int *col;        /* the map column (or NDJSON member) of each edit, for reports */
    size_t n, cap;
    bool refused, done;
} row;

typedef struct rows {
    row *v;
    size_t n, cap;
    char **colname; /* names for reports, owned */
    size_t ncol;
} rows;

typedef struct refusal {
    size_t line;
    char column[128];
    char reason[600];
} refusal;

typedef struct report {
    refusal *v;
    size_t n, cap;
} report;

static void rows_free(rows *r)
{
    for (size_t i = 0; i < r->n; i++) {
        for (size_t j = 0; j < r->v[i].n; j++)
            free(r->v[i].edit[j]);
        free(r->v[i].edit);
        free(r->v[i].col);
        free(r->v[i].key);
    }
    free(r->v);
    for (size_t i = 0; i < r->ncol; i++)
        free(r->colname[i]);
    free(r->colname);
}

/* Room for one more element in array v of n used: v itself when it has it, else v grown to
 * twice *cap (first when empty) with *cap updated; NULL when out of memory (v untouched). */
static void *room(void *v, size_t n, size_t *cap, size_t size, size_t first)
{
    if (n < *cap)
        return v;
    size_t c = *cap ? *cap * 2 : first;
    void *p = realloc(v, c * size);
    if (p != NULL)
        *cap = c;
    return p;
}

static row *row_new(rows *r, size_t line)
{
    row *v = room(r->v, r->n, &r->cap, sizeof(*v), 256);
    if (v == NULL)
        return NULL;
    r->v = v;
    row *x = &r->v[r->n++];
    memset(x, 0, sizeof(*x));
    x->line = line;
    return x;
}

static bool row_edit(row *x, int col, const char *name, const char *op, const char *value)
{
    size_t cap = x->cap, cap2 = x->cap; /* (edit and col grow together) */
    char **e = room(x->edit, x->n, &cap, sizeof(*e), 16);
    if (e == NULL)
        return false;
    x->edit = e;
    int *c = room(x->col, x->n, &cap2, sizeof(*c), 16);
    if (c == NULL)
        return false;
    x->col = c;
    x->cap = cap;
    size_t len = strlen(name) + strlen(op) + strlen(value) + 1;
    char *t = malloc(len);
    if (t == NULL)
        return false;
    snprintf(t, len, "%s%s%s", name, op, value);
    x->edit[x->n] = t;
    x->col[x->n++] = col;
    return true;
}

static bool refuse_row(report *rep, row *x, const char *column, const char *fmt, ...)
    CLI__PRINTF(4, 5);
static bool refuse_row(report *rep, row *x, const char *column, const char *fmt, ...)
{
    x->refused = true;
    refusal *v = room(rep->v, rep->n, &rep->cap, sizeof(*v), 64);
    if (v == NULL)
        return false;
    rep->v = v;
    refusal *f = &rep->v[rep->n++];
    f->line = x->line;
    snprintf(f->column, sizeof(f->column), "%s", column != NULL ? column : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->reason, sizeof(f->reason), fmt, ap);
    va_end(ap);
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* The map (MAP.json)                                                                        */

typedef struct colmap {
    const char *column; /* header name */
    int index;          /* in the header */
    char name[130];     /* scope.field, or "" (key only) */
    const char *type;   /* the field's schema type */
    bool trim, upper, lower, key;
    bool date_dmy;       /* "date": "dd/mm/yyyy" */
    const char *split;   /* separator, or NULL */
    json_object *values; /* replacements, or NULL */
} colmap;

/* A grant the map asks for ("grants"): to every row, or to the rows whose cell in `column`
 * says yes. Strings borrowed from the map's JSON. */
#define GRANTS_MAX 16
typedef struct grantmap {
    const char *to, *scopes, *purpose, *basis, *access, *until, *evidence, *provision;
    const char *column; /* NULL: every row */
} grantmap;

typedef struct map {
    json_object *doc;
    colmap *c;
    size_t n;
    grantmap g[GRANTS_MAX];
    size_t ng;
    char delimiter; /* 0: guess */
    const char *key_name;
} map;

static bool jbool(json_object *o, const char *key, bool dflt)
{
    json_object *v = jmember(o, key);
    return v != NULL ? json_object_get_boolean(v) : dflt;
}

/* "grants": [{"to", "scopes", "purpose", "basis", "access"?, "until"?, "evidence"?,
 * "provision"?, "column"?}]: checked here for shape; the node checks the rest of each grant. */
static cli_err grants_read(cli__ctx *ctx, const char *path, bool ndjson, map *m)
{
    json_object *gs = jmember(m->doc, "grants");
    if (gs == NULL)
        return CLI_OK;
    if (!json_object_is_type(gs, json_type_array) || json_object_array_length(gs) > GRANTS_MAX)
        return cli__fail(ctx, CLI_EINPUT,
            _("%s: \"grants\" must be a list of at most %d {\"to\", \"scopes\", \"purpose\", "
              "\"basis\", ...}"),
            path, GRANTS_MAX);
    m->ng = json_object_array_length(gs);
    for (size_t i = 0; i < m->ng; i++) {
        json_object *o = json_object_array_get_idx(gs, i);
        grantmap *g = &m->g[i];
        static const char *const known[] = { "to", "scopes", "purpose", "basis", "access", "until",
            "evidence", "provision", "column" };
        if (!json_object_is_type(o, json_type_object))
            return cli__fail(ctx, CLI_EINPUT, _("%s: grant %zu is not an object"), path, i + 1);
        json_object_object_foreach(o, k, v)
        {
            bool ok = false;
            for (size_t j = 0; j < sizeof known / sizeof known[0]; j++)
                ok = ok || strcmp(k, known[j]) == 0;
            if (!ok)
                return cli__fail(ctx, CLI_EINPUT,
                    _("%s: grant %zu: '%s' is unknown (known, each text: to, scopes, purpose, "
                      "basis, access, until, evidence, provision, column)"),
                    path, i + 1, k);
            if (!json_object_is_type(v, json_type_string))
                return cli__fail(
                    ctx, CLI_EINPUT, _("%s: grant %zu: '%s' is not text"), path, i + 1, k);
        }
        g->to = cli__json_str(o, "to");
        g->scopes = cli__json_str(o, "scopes");
        g->purpose = cli__json_str(o, "purpose");
        g->basis = cli__json_str(o, "basis");
        g->access = cli__json_str(o, "access");
        g->until = cli__json_str(o, "until");
        g->evidence = cli__json_str(o, "evidence");
        g->provision = cli__json_str(o, "provision");
        g->column = cli__json_str(o, "column");
        if (g->to == NULL || g->scopes == NULL || g->purpose == NULL || g->basis == NULL)
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: grant %zu needs \"to\", \"scopes\", \"purpose\" and \"basis\""), path,
                i + 1);
        if (g->column != NULL && ndjson)
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: grant %zu: \"column\" is for CSV files (NDJSON: a grant goes to every "
                  "row)"),
                path, i + 1);
    }
    return CLI_OK;
}

static cli_err map_read(cli__ctx *ctx, const char *path, json_object *schema, bool ndjson, map *m)
{
    memset(m, 0, sizeof(*m));
    uint8_t *bytes = NULL;
    size_t len = 0;
    cli_err err = cli__read_file(ctx, path, CLI__FILE_MAX, &bytes, &len);
    if (err != CLI_OK)
        return err;
    err = cli__json_parse(ctx, path, (const char *)bytes, len, &m->doc);
    free(bytes);
    if (err != CLI_OK)
        return err;
    json_object_object_foreach(m->doc, k, v)
    {
        (void)v;
        if (strcmp(k, "columns") != 0 && strcmp(k, "delimiter") != 0 && strcmp(k, "key_name") != 0
            && strcmp(k, "grants") != 0)
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: unknown member '%s' (the map has columns, delimiter, key_name, grants)"),
                path, k);
    }
    if ((err = grants_read(ctx, path, ndjson, m)) != CLI_OK)
        return err;
    const char *d = cli__json_str(m->doc, "delimiter");
    if (d != NULL) {
        if (strlen(d) != 1 || (d[0] != ';' && d[0] != ',' && d[0] != '\t' && d[0] != '|'))
            return cli__fail(
                ctx, CLI_EINPUT, _("%s: delimiter must be one of \";\" \",\" \"\\t\" \"|\""), path);
        m->delimiter = d[0];
    }
    m->key_name = cli__json_str(m->doc, "key_name");
    json_object *cols = jmember(m->doc, "columns");
    if (ndjson && cols == NULL)
        return CLI_OK; /* NDJSON names its fields itself: only key_name counts */
    if (cols == NULL || !json_object_is_type(cols, json_type_array)
        || json_object_array_length(cols) == 0)
        return cli__fail(ctx, CLI_EINPUT,
            _("%s: \"columns\" must be a list of {\"column\": NAME, \"field\": \"scope.field\", "
              "...}"),
            path);
    m->n = json_object_array_length(cols);
    if ((m->c = calloc(m->n, sizeof(*m->c))) == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    size_t nkeys = 0;
    for (size_t i = 0; i < m->n; i++) {
        json_object *o = json_object_array_get_idx(cols, i);
        colmap *c = &m->c[i];
        c->index = -1;
        if (!json_object_is_type(o, json_type_object) || cli__json_str(o, "column") == NULL)
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: column %zu has no \"column\" (the header's name)"), path, i + 1);
        c->column = cli__json_str(o, "column");
        json_object_object_foreach(o, k2, v2)
        {
            (void)v2;
            static const char *const known[]
                = { "column", "field", "trim", "upper", "lower", "key", "date", "split", "values" };
            bool ok = false;
            for (size_t j = 0; j < sizeof known / sizeof known[0]; j++)
                ok = ok || strcmp(k2, known[j]) == 0;
            if (!ok)
                return cli__fail(ctx, CLI_EINPUT,
                    _("%s: column \"%s\": unknown member '%s' (known: field, trim, upper, lower, "
                      "key, date, split, values)"),
                    path, c->column, k2);
        }
        c->trim = jbool(o, "trim", true);
        c->upper = jbool(o, "upper", false);
        c->lower = jbool(o, "lower", false);
        c->key = jbool(o, "key", false);
        nkeys += c->key;
        c->split = cli__json_str(o, "split");
        if (c->split != NULL && c->split[0] == '\0')
            return cli__fail(
                ctx, CLI_EINPUT, _("%s: column \"%s\": split is empty"), path, c->column);
        c->values = jmember(o, "values");
        if (c->values != NULL && !json_object_is_type(c->values, json_type_object))
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: column \"%s\": values must be an object {\"as written\": \"as stored\"}"),
                path, c->column);
        const char *date = cli__json_str(o, "date");
        if (date != NULL) {
            if (strcmp(date, "dd/mm/yyyy") == 0)
                c->date_dmy = true;
            else if (strcmp(date, "yyyy-mm-dd") != 0)
                return cli__fail(ctx, CLI_EINPUT,
                    _("%s: column \"%s\": date must be \"dd/mm/yyyy\" or \"yyyy-mm-dd\""), path,
                    c->column);
        }
        const char *field = cli__json_str(o, "field");
        if (field == NULL && !c->key)
            return cli__fail(ctx, CLI_EINPUT,
                _("%s: column \"%s\" names no \"field\" (scope.field) and is not the key"), path,
                c->column);
        if (field != NULL) {
            char sc[64], fl[64];
            json_object *f = split_name(field, sc, fl) ? schema_field(schema, sc, fl, NULL) : NULL;
            if (f == NULL)
                return cli__fail(ctx, CLI_EINPUT,
                    _("%s: column \"%s\": '%s' is not a field of the node's schema (see patto "
                      "schema)"),
                    path, c->column, field);
            snprintf(c->name, sizeof(c->name), "%s", field);
            c->type = cli__json_str(f, "type");
            if (c->type == NULL)
                c->type = "text";
        }
    }
    if (nkeys > 1)
        return cli__fail(ctx, CLI_EINPUT, _("%s: only one column can be the key"), path);
    return CLI_OK;
}

/* dd/mm/yyyy (or d/m/yyyy) into YYYY-MM-DD; false when it is not a day that exists. */
static bool dmy_date(const char *s, char out[16])
{
    int d = 0, mo = 0, y = 0, n = 0;
    if (sscanf(s, "%2d/%2d/%4d%n", &d, &mo, &y, &n) != 3 || s[n] != '\0' || y < 1000 || y > 9999
        || mo < 1 || mo > 12 || d < 1 || d > 31)
        return false;
    snprintf(out, 16, "%04d-%02d-%02d", y, mo, d);
    proto_date pd;
    return proto_date_parse(out, 10, &pd) == PROTO_OK;
}

/* The edits of one value of a field of type type ("=" for registers, "+=" for sets, counters
 * and timelines). */
static const char *op_of(const char *type, bool negative)
{
    if (strcmp(type, "set") == 0 || strcmp(type, "timeline") == 0)
        return "+=";
    if (strcmp(type, "counter") == 0)
        return negative ? "-=" : "+=";
    return "=";
}

/* One CSV cell through its column's transforms into edits of x (or its key). */
static bool csv_cell(report *rep, row *x, const colmap *c, int col, char *cell)
{
    char *v = cell;
    if (c->trim)
        trim(&v);
    if (v[0] == '\0') {
        if (c->key)
            return refuse_row(rep, x, c->column, _("the identifier is empty"));
        return true;
    }
    json_object *rep_v = jmember(c->values, v);
    if (rep_v != NULL && json_object_is_type(rep_v, json_type_string))
        v = (char *)(uintptr_t)json_object_get_string(rep_v);
    char *tmp = NULL;
    if (c->upper || c->lower) {
        if ((tmp = xstrdup(v, strlen(v))) == NULL)
            return false;
        for (char *p = tmp; *p; p++)
            if ((unsigned char)*p < 0x80)
                *p = (char)(c->upper ? (*p >= 'a' && *p <= 'z' ? *p - 32 : *p)
                                     : (*p >= 'A' && *p <= 'Z' ? *p + 32 : *p));
        v = tmp;
    }
    char date[16];
    bool ok = true;
    if (c->date_dmy) {
        if (!dmy_date(v, date)) {
            ok = refuse_row(
                rep, x, c->column, _("'%s' is not a date dd/mm/yyyy (a day that exists)"), v);
            free(tmp);
            return ok;
        }
        v = date;
    }
    if (c->key && (x->key = xstrdup(v, strlen(v))) == NULL)
        ok = false;
    if (ok && c->name[0] != '\0') {
        if (c->split != NULL) {
            char *copy = xstrdup(v, strlen(v));
            size_t sl = strlen(c->split);
            ok = copy != NULL;
            for (char *p = copy; ok && p != NULL;) {
                char *next = strstr(p, c->split);
                if (next != NULL) {
                    *next = '\0';
                    next += sl;
                }
                char *part = p;
                trim(&part);
                if (part[0] != '\0')
                    ok = row_edit(x, col, c->name, op_of(c->type, false), part);
                p = next;
            }
            free(copy);
        } else {
            ok = row_edit(x, col, c->name, op_of(c->type, v[0] == '-'),
                v[0] == '-' && strcmp(c->type, "counter") == 0 ? v + 1 : v);
        }
    }
    free(tmp);
    return ok;
}

/* ---------------------------------------------------------------------------------------- */
/* CSV                                                                                       */

typedef struct csv_state {
    char **f; /* the current row's fields */
    size_t n, cap;
    size_t nl_in_row; /* newlines inside its fields */
    size_t line;      /* the line being fed */
    size_t row_line;  /* where the current row started */
    bool nomem;
    /* rows of raw fields, collected */
    char ***rowf;
    size_t *rown, *rowline;
    size_t nrows, rcap;
} csv_state;

static void csv_field_cb(void *s, size_t len, void *data)
{
    csv_state *st = data;
    if (st->nomem)
        return;
    char **f = room(st->f, st->n, &st->cap, sizeof(*f), 16);
    if (f == NULL) {
        st->nomem = true;
        return;
    }
    st->f = f;
    const char *p = s != NULL ? s : "";
    for (size_t i = 0; i < len; i++)
        st->nl_in_row += p[i] == '\n';
    if ((st->f[st->n++] = xstrdup(p, len)) == NULL)
        st->nomem = true;
}

static void csv_row_cb(int c, void *data)
{
    (void)c;
    csv_state *st = data;
    if (st->nomem)
        return;
    size_t c1 = st->rcap, c2 = st->rcap, c3 = st->rcap; /* (the three grow together) */
    char ***rf = room(st->rowf, st->nrows, &c1, sizeof(*rf), 256);
    if (rf != NULL)
        st->rowf = rf;
    size_t *rn = rf != NULL ? room(st->rown, st->nrows, &c2, sizeof(*rn), 256) : NULL;
    if (rn != NULL)
        st->rown = rn;
    size_t *rl = rn != NULL ? room(st->rowline, st->nrows, &c3, sizeof(*rl), 256) : NULL;
    if (rl == NULL) {
        st->nomem = true;
        return;
    }
    st->rowline = rl;
    st->rcap = c1;
    st->rowf[st->nrows] = st->f;
    st->rown[st->nrows] = st->n;
    st->rowline[st->nrows] = st->line - st->nl_in_row;
    st->nrows++;
    st->f = NULL;
    st->n = st->cap = 0;
    st->nl_in_row = 0;
}

static void csv_state_free(csv_state *st)
{
    for (size_t i = 0; i < st->nrows; i++) {
        for (size_t j = 0; j < st->rown[i]; j++)
            free(st->rowf[i][j]);
        free(st->rowf[i]);
    }
    for (size_t j = 0; j < st->n; j++)
        free(st->f[j]);
    free(st->f);
    free(st->rowf);
    free(st->rown);
    free(st->rowline);
}

/* A grant column's cell that asks for the grant: x, sì, si, s, yes, y, 1, true, vero (any case,
 * spaces around ignored); anything else, the empty cell too, does not. */
static bool says_yes(const char *cell)
{
    static const char *const yes[]
        = { "x", "s\xc3\xac", "si", "s", "yes", "y", "1", "true", "vero" };
    char buf[16];
    size_t n = 0;
    while (*cell == ' ' || *cell == '\t')
        cell++;
    for (; *cell != '\0' && n < sizeof buf - 1; cell++)
        buf[n++] = (char)tolower((unsigned char)*cell);
    while (n > 0 && (buf[n - 1] == ' ' || buf[n - 1] == '\t' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    if (strcmp(buf, "s\xc3\x8c") == 0) /* (SÌ: tolower leaves the UTF-8 letter as it is) */
        return true;
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        if (strcmp(buf, yes[i]) == 0)
            return true;
    return false;
}

/* The delimiter of the header line: ';' when it has one outside quotes, else ','. */
static char guess_delimiter(const char *text)
{
    bool q = false;
    size_t semi = 0, comma = 0, tab = 0;
    for (const char *p = text; *p != '\0' && (q || *p != '\n'); p++) {
        if (*p == '"')
            q = !q;
        else if (!q)
            semi += *p == ';', comma += *p == ',', tab += *p == '\t';
    }
    return semi > 0 ? ';' : comma > 0 ? ',' : tab > 0 ? '\t' : ';';
}

static cli_err csv_rows(cli__ctx *ctx, const char *path, const char *text, size_t len, const map *m,
    rows *out, report *rep)
{
    csv_state st;
    memset(&st, 0, sizeof(st));
    struct csv_parser p;
    if (csv_init(&p, CSV_APPEND_NULL) != 0)
        return cli__fail(ctx, CLI_EINTERNAL, _("cannot start the CSV parser"));
    csv_set_delim(&p, (unsigned char)(m->delimiter ? m->delimiter : guess_delimiter(text)));
    cli_err err = CLI_OK;
    size_t off = 0;
    st.line = 1;
    while (off < len && err == CLI_OK) {
        const char *nl = memchr(text + off, '\n', len - off);
        size_t chunk = nl != NULL ? (size_t)(nl - (text + off)) + 1 : len - off;
        if (csv_parse(&p, text + off, chunk, csv_field_cb, csv_row_cb, &st) != chunk)
            err = cli__fail(
                ctx, CLI_EINPUT, _("%s: line %zu: %s"), path, st.line, csv_strerror(csv_error(&p)));
        off += chunk;
        st.line += nl != NULL;
    }
    if (err == CLI_OK && csv_fini(&p, csv_field_cb, csv_row_cb, &st) != 0)
        err = cli__fail(ctx, CLI_EINPUT, _("%s: %s (a quote is not closed?)"), path,
            csv_strerror(csv_error(&p)));
    csv_free(&p);
    if (err == CLI_OK && st.nomem)
        err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory reading %s"), path);
    if (err == CLI_OK && st.nrows == 0)
        err = cli__fail(ctx, CLI_EINPUT, _("%s has no header line"), path);
    colmap *cols = m->c;
    /* The header: every mapped column must be there (names compared trimmed, ignoring case). */
    for (size_t i = 0; err == CLI_OK && i < m->n; i++) {
        for (size_t j = 0; j < st.rown[0] && cols[i].index < 0; j++) {
            char *h = st.rowf[0][j];
            trim(&h);
            if (strcasecmp(h, cols[i].column) == 0)
                cols[i].index = (int)j;
        }
        if (cols[i].index < 0)
            err = cli__fail(ctx, CLI_EINPUT,
                _("%s: the header (line 1) has no column \"%s\" that the map names"), path,
                cols[i].column);
    }
    int gidx[GRANTS_MAX]; /* each grant's column in the header */
    for (size_t i = 0; err == CLI_OK && i < m->ng; i++) {
        const grantmap *g = &m->g[i];
        gidx[i] = -1;
        for (size_t j = 0; g->column != NULL && j < st.rown[0] && gidx[i] < 0; j++) {
            char *h = st.rowf[0][j];
            trim(&h);
            if (strcasecmp(h, g->column) == 0)
                gidx[i] = (int)j;
        }
        if (g->column != NULL && gidx[i] < 0)
            err = cli__fail(ctx, CLI_EINPUT,
                _("%s: the header (line 1) has no column \"%s\" that the map's grant %zu names"),
                path, g->column, i + 1);
    }
    if (err == CLI_OK && (out->colname = calloc(m->n, sizeof(char *))) == NULL)
        err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    for (size_t i = 0; err == CLI_OK && i < m->n; i++) {
        if ((out->colname[i] = xstrdup(cols[i].column, strlen(cols[i].column))) == NULL)
            err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        out->ncol = i + 1;
    }
    for (size_t r = 1; err == CLI_OK && r < st.nrows; r++) {
        row *x = row_new(out, st.rowline[r]);
        if (x == NULL) {
            err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
            break;
        }
        for (size_t i = 0; i < m->ng; i++) {
            const grantmap *g = &m->g[i];
            char *cell
                = g->column != NULL && (size_t)gidx[i] < st.rown[r] ? st.rowf[r][gidx[i]] : NULL;
            if (g->column == NULL || (cell != NULL && says_yes(cell)))
                x->grants |= 1u << i;
        }
        for (size_t i = 0; i < m->n && !x->refused; i++) {
            char *cell = (size_t)cols[i].index < st.rown[r] ? st.rowf[r][cols[i].index] : NULL;
            if (cell == NULL) {
                if (!refuse_row(
                        rep, x, cols[i].column, _("the row has only %zu columns"), st.rown[r]))
                    err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
                continue;
            }
            if (!csv_cell(rep, x, &cols[i], (int)i, cell))
                err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        }
        if (err == CLI_OK && !x->refused && x->n == 0
            && !refuse_row(rep, x, NULL, _("the row has no value in any mapped column")))
            err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        if (err == CLI_OK && !x->refused && x->n > EDITS_MAX
            && !refuse_row(rep, x, NULL, _("the row makes more than %d edits"), EDITS_MAX))
            err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    }
    csv_state_free(&st);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* NDJSON: one object a line, {"_key": TEXT?, "scope.field": VALUE, ...}                    */

/* The edits of one member; false when out of memory. Refusals go to rep. */
static bool ndjson_member(
    report *rep, row *x, json_object *schema, int col, const char *name, json_object *v)
{
    char sc[64], fl[64];
    json_object *f = split_name(name, sc, fl) ? schema_field(schema, sc, fl, NULL) : NULL;
    if (f == NULL)
        return refuse_row(rep, x, name, _("'%s' is not a field of the node's schema"), name);
    const char *type = cli__json_str(f, "type");
    type = type != NULL ? type : "text";
    if (v == NULL || json_object_is_type(v, json_type_null))
        return true;
    bool list = strcmp(type, "set") == 0 || strcmp(type, "timeline") == 0;
    if (list && !json_object_is_type(v, json_type_array) && strcmp(type, "set") == 0
        && json_object_is_type(v, json_type_string))
        return row_edit(x, col, name, "+=", json_object_get_string(v));
    if (list) {
        if (!json_object_is_type(v, json_type_array))
            return refuse_row(rep, x, name, _("a %s takes a list"), type);
        for (size_t i = 0; i < json_object_array_length(v); i++) {
            json_object *e = json_object_array_get_idx(v, i);
            const char *t;
            if (strcmp(type, "timeline") == 0) {
                json_object *ev = jmember(e, "event");
                if (jmember(e, "redacted") != NULL
                    && json_object_get_boolean(jmember(e, "redacted")))
                    continue;
                t = json_object_to_json_string_ext(
                    ev != NULL ? ev : e, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
            } else if (json_object_is_type(e, json_type_string)) {
                t = json_object_get_string(e);
            } else {
                return refuse_row(rep, x, name, _("a set takes a list of strings"));
            }
            if (!row_edit(x, col, name, "+=", t))
                return false;
        }
        return true;
    }
    if (strcmp(type, "counter") == 0) {
        if (!json_object_is_type(v, json_type_int))
            return refuse_row(rep, x, name, _("a counter takes a whole number"));
        int64_t n = json_object_get_int64(v);
        if (n == 0)
            return true;
        char num[32];
        snprintf(num, sizeof num, "%" PRIu64, n < 0 ? (uint64_t)0 - (uint64_t)n : (uint64_t)n);
        return row_edit(x, col, name, n < 0 ? "-=" : "+=", num);
    }
    if (json_object_is_type(v, json_type_string))
        return row_edit(x, col, name, "=", json_object_get_string(v));
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double))
        return row_edit(
            x, col, name, "=", json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN));
    return refuse_row(rep, x, name, _("takes a string or a number"));
}

static cli_err ndjson_rows(cli__ctx *ctx, const char *path, char *text, size_t len,
    json_object *schema, rows *out, report *rep)
{
    size_t line = 0, off = 0;
    cli_err err = CLI_OK;
    /* column names for reports: the members, as they come (deduplicated) */
    size_t capc = 0;
    while (off < len && err == CLI_OK) {
        char *nl = memchr(text + off, '\n', len - off);
        size_t l = nl != NULL ? (size_t)(nl - (text + off)) : len - off;
        char *s = text + off;
        off += l + (nl != NULL);
        line++;
        s[l] = '\0';
        char *t = s;
        trim(&t);
        if (t[0] == '\0')
            continue;
        row *x = row_new(out, line);
        if (x == NULL)
            return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        json_tokener *tok = json_tokener_new();
        json_object *o = tok != NULL ? json_tokener_parse_ex(tok, t, (int)strlen(t)) : NULL;
        bool whole = tok != NULL && json_tokener_get_error(tok) == json_tokener_success
            && (size_t)json_tokener_get_parse_end(tok) == strlen(t);
        if (tok != NULL)
            json_tokener_free(tok);
        if (o == NULL || !whole || !json_object_is_type(o, json_type_object)) {
            json_object_put(o);
            if (!refuse_row(rep, x, NULL, _("not one JSON object")))
                return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
            continue;
        }
        json_object_object_foreach(o, k, v)
        {
            if (x->refused || err != CLI_OK)
                break;
            if (strcmp(k, "_key") == 0) {
                if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0)
                    refuse_row(rep, x, k, _("_key must be a non-empty string"));
                else if ((x->key = xstrdup(
                              json_object_get_string(v), strlen(json_object_get_string(v))))
                    == NULL)
                    err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
                continue;
            }
            if (k[0] == '_')
                continue; /* _owner and other annotations of an export */
            int col = -1;
            for (size_t i = 0; i < out->ncol && col < 0; i++)
                if (strcmp(out->colname[i], k) == 0)
                    col = (int)i;
            if (col < 0) {
                char **cn = room(out->colname, out->ncol, &capc, sizeof(*cn), 32);
                if (cn == NULL) {
                    err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
                    break;
                }
                out->colname = cn;
                if ((out->colname[out->ncol] = xstrdup(k, strlen(k))) == NULL) {
                    err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
                    break;
                }
                col = (int)out->ncol++;
            }
            if (!ndjson_member(rep, x, schema, col, k, v))
                err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        }
        json_object_put(o);
        if (err == CLI_OK && !x->refused && x->n == 0
            && !refuse_row(rep, x, NULL, _("the object has no field")))
            err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        if (err == CLI_OK && !x->refused && x->n > EDITS_MAX
            && !refuse_row(rep, x, NULL, _("the object makes more than %d edits"), EDITS_MAX))
            err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    }
    (void)path;
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Sending rows to the node                                                                  */

typedef struct counts {
    size_t created, exists, refused, deltas, granted, grants_stood;
    uint64_t node_us; /* the node's time in its write transactions */
} counts;

/* One case.batch of rows idx[0..n) (dry: the schema's checks only). Refusals go to rep with
 * the column of the edit the node names. */
static cli_err send_batch(cli__ctx *ctx, rows *rs, const size_t *idx, size_t n,
    const char *key_name, bool dry, report *rep, counts *cnt)
{
    json_object *doc = json_object_new_object(), *items = json_object_new_array();
    if (doc == NULL || items == NULL) {
        json_object_put(doc);
        json_object_put(items);
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    }
    json_object_object_add(doc, "key_name", json_object_new_string(key_name));
    json_object_object_add(doc, "dry_run", json_object_new_boolean(dry));
    json_object_object_add(doc, "items", items);
    for (size_t i = 0; i < n; i++) {
        row *x = &rs->v[idx[i]];
        json_object *it = json_object_new_object(), *ed = json_object_new_array();
        for (size_t j = 0; j < x->n; j++)
            json_object_array_add(ed, json_object_new_string(x->edit[j]));
        if (x->key != NULL)
            json_object_object_add(it, "key", json_object_new_string(x->key));
        json_object_object_add(it, "edits", ed);
        json_object_array_add(items, it);
    }
    const char *text = json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN);
    proto_bytes arg = { (const uint8_t *)text, strlen(text) };
    json_object *ans = NULL;
    cli_err err = cli__call(ctx, "case.batch", &arg, 1, &ans);
    json_object_put(doc);
    if (err != CLI_OK)
        return err;
    json_object *res = jmember(ans, "results");
    if (res == NULL || !json_object_is_type(res, json_type_array)
        || json_object_array_length(res) != n) {
        json_object_put(ans);
        return cli__fail(ctx, CLI_EINTERNAL, _("the node's answer to case.batch has no results"));
    }
    json_object *d = jmember(ans, "deltas"), *wus = jmember(ans, "write_us");
    if (d != NULL)
        cnt->deltas += (size_t)json_object_get_int64(d);
    if (wus != NULL)
        cnt->node_us += (uint64_t)json_object_get_int64(wus);
    for (size_t i = 0; i < n && err == CLI_OK; i++) {
        json_object *r = json_object_array_get_idx(res, i);
        const char *state = cli__json_str(r, "state");
        row *x = &rs->v[idx[i]];
        if (state == NULL)
            continue;
        if (strcmp(state, "refused") == 0) {
            const char *reason = cli__json_str(r, "reason");
            reason = reason != NULL ? reason : "refused";
            const char *column = NULL;
            unsigned long en = 0;
            int used = 0;
            if (sscanf(reason, "edit %lu: %n", &en, &used) == 1 && used > 0 && en >= 1
                && en <= x->n) {
                int c = x->col[en - 1];
                column = c >= 0 && (size_t)c < rs->ncol ? rs->colname[c] : NULL;
                reason += used;
            }
            if (!refuse_row(rep, x, column, "%s", reason))
                err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
            cnt->refused++;
        } else if (strcmp(state, "created") == 0) {
            x->done = true;
            cnt->created++;
        } else if (strcmp(state, "exists") == 0) {
            x->done = true;
            x->existed = true;
            cnt->exists++;
        }
        const char *id = cli__json_str(r, "id");
        if (x->done && id != NULL)
            snprintf(x->id, sizeof x->id, "%s", id);
    }
    json_object_put(ans);
    return err;
}

/* Does case id's consent list hold a grant in force to g->to on scope with g's access? (A
 * re-run of an import does not grant again what stands.) */
static bool grant_stands(json_object *list, const grantmap *g, const char *scope)
{
    json_object *entries = jmember(list, "grants");
    const char *access = g->access != NULL ? g->access : "read";
    for (size_t i = 0; entries != NULL && i < json_object_array_length(entries); i++) {
        json_object *r = json_object_array_get_idx(entries, i);
        const char *kind = cli__json_str(r, "kind"), *to = cli__json_str(r, "to"),
                   *sc = cli__json_str(r, "scope"), *acc = cli__json_str(r, "access"),
                   *state = cli__json_str(r, "state");
        if (kind != NULL && strcmp(kind, "grant") == 0 && to != NULL && strcmp(to, g->to) == 0
            && sc != NULL && strcmp(sc, scope) == 0 && acc != NULL && strcmp(acc, access) == 0
            && state != NULL && strcmp(state, "active") == 0)
            return true;
    }
    return false;
}

/* The grants the map asks for, for rows idx[0..n) the node took: one consent.grant per row and
 * grant (of the scopes that do not stand already, for a row imported before). A grant the node
 * refuses is reported on the row (its case stays). */
static cli_err grant_rows(
    cli__ctx *ctx, rows *rs, const size_t *idx, size_t n, const map *m, report *rep, counts *cnt)
{
    cli_err err = CLI_OK;
    for (size_t i = 0; i < n && err == CLI_OK; i++) {
        row *x = &rs->v[idx[i]];
        if (!x->done || x->id[0] == '\0' || x->grants == 0)
            continue;
        json_object *list = NULL;
        if (x->existed) {
            proto_bytes a = { (const uint8_t *)x->id, strlen(x->id) };
            if ((err = cli__call(ctx, "consent.list", &a, 1, &list)) != CLI_OK)
                break;
        }
        for (size_t k = 0; k < m->ng && err == CLI_OK; k++) {
            const grantmap *g = &m->g[k];
            if (!(x->grants & (1u << k)))
                continue;
            char scopes[512] = "", copy[512];
            snprintf(copy, sizeof copy, "%s", g->scopes);
            for (char *save = NULL, *sc = strtok_r(copy, ",", &save); sc != NULL;
                 sc = strtok_r(NULL, ",", &save)) {
                if (list != NULL && grant_stands(list, g, sc)) {
                    cnt->grants_stood++;
                    continue;
                }
                size_t used = strlen(scopes);
                snprintf(scopes + used, sizeof scopes - used, "%s%s", used ? "," : "", sc);
            }
            if (scopes[0] == '\0')
                continue;
            const char *args[] = { x->id, g->to, scopes, g->purpose, g->basis,
                g->access != NULL ? g->access : "read", g->until != NULL ? g->until : "",
                g->evidence != NULL ? g->evidence : "", g->provision != NULL ? g->provision : "" };
            proto_bytes b[9];
            for (size_t j = 0; j < 9; j++)
                b[j] = (proto_bytes) { (const uint8_t *)args[j], strlen(args[j]) };
            json_object *ans = NULL;
            cli_err e = cli__call(ctx, "consent.grant", b, 9, &ans);
            json_object_put(ans);
            if (e == CLI_OK) {
                cnt->granted++;
            } else if (e == CLI_EINPUT || e == CLI_ENOTFOUND || e == CLI_EUSAGE) {
                /* the node's sentence, on the row; the case stays, the next grant goes on */
                if (!refuse_row(
                        rep, x, g->column, _("grant to %s of %s: %s"), g->to, scopes, ctx->msg))
                    err = cli__fail(ctx, CLI_EINTERNAL, "out of memory");
                ctx->err = CLI_OK;
            } else {
                err = e;
            }
        }
        json_object_put(list);
    }
    return err;
}

static void progress(bool tty, size_t done, size_t total, uint64_t t0, bool last)
{
    double s = (double)(mono_ms() - t0) / 1000.0;
    double rate = s > 0 ? (double)done / s : 0;
    double eta = rate > 0 ? (double)(total - done) / rate : 0;
    if (tty)
        fprintf(stderr, "\r");
    fprintf(stderr, _("import: %zu/%zu rows, %.0f rows/s, ETA %.0f s"), done, total, rate, eta);
    fprintf(stderr, "%s", tty ? (last ? "   \n" : "   ") : "\n");
    fflush(stderr);
}

static int refusal_cmp(const void *a, const void *b)
{
    const refusal *x = a, *y = b;
    return x->line < y->line ? -1 : x->line > y->line;
}

cli_err cli__import(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *map_path = NULL, *format = NULL, *encoding = NULL, *batch_text = NULL;
    bool dry = false;
    cli__opt opts[] = { { "map", &map_path, NULL }, { "format", &format, NULL },
        { "encoding", &encoding, NULL }, { "batch", &batch_text, NULL },
        { "dry-run", NULL, &dry } };
    const char *pos[1] = { NULL };
    size_t npos = 0;
    const char **posv = calloc((size_t)argc + 1, sizeof *posv);
    if (posv == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    cli_err err
        = cli__parse(ctx, cmd, argc, argv, opts, sizeof opts / sizeof opts[0], posv, 1, 1, &npos);
    pos[0] = posv[0];
    free(posv);
    if (err != CLI_OK)
        return err;
    const char *path = pos[0];
    size_t plen = strlen(path);
    bool ndjson = format != NULL ? strcmp(format, "ndjson") == 0
                                 : (plen > 7 && strcmp(path + plen - 7, ".ndjson") == 0)
            || (plen > 6 && strcmp(path + plen - 6, ".jsonl") == 0);
    if (format != NULL && strcmp(format, "ndjson") != 0 && strcmp(format, "csv") != 0)
        return cli__usage(ctx, cmd, _("--format is csv or ndjson"));
    if (encoding != NULL && strcasecmp(encoding, "utf-8") != 0 && strcasecmp(encoding, "utf8") != 0
        && strcasecmp(encoding, "windows-1252") != 0 && strcasecmp(encoding, "cp1252") != 0)
        return cli__usage(ctx, cmd, _("--encoding is utf-8 or windows-1252"));
    bool cp1252 = encoding != NULL
        && (strcasecmp(encoding, "windows-1252") == 0 || strcasecmp(encoding, "cp1252") == 0);
    uint64_t batch = BATCH_DEFAULT;
    if (batch_text != NULL
        && (err = cli__parse_u64(ctx, cmd, "batch", batch_text, 1, BATCH_MAX, &batch)) != CLI_OK)
        return err;
    if (!ndjson && map_path == NULL)
        return cli__usage(
            ctx, cmd, _("a CSV import needs --map MAP.json (columns to scope.field)"));

    /* Files are read before DATA is entered: relative paths are the operator's. */
    uint8_t *raw = NULL;
    size_t rawlen = 0;
    if ((err = cli__read_file(ctx, path, IMPORT_FILE_MAX, &raw, &rawlen)) != CLI_OK)
        return err;
    char mapabs[PATH_MAX] = "";
    if (map_path != NULL && realpath(map_path, mapabs) == NULL) {
        free(raw);
        return cli__fail(ctx, CLI_ENOTFOUND, _("cannot read %s: %s"), map_path, strerror(errno));
    }
    char dirbuf[PATH_MAX];
    absolute_dir(ctx, dirbuf);
    char *text = NULL;
    size_t len = 0;
    err = to_utf8(ctx, path, raw, rawlen, cp1252, &text, &len);
    free(raw);
    if (err != CLI_OK)
        return err;

    json_object *schema = NULL;
    map m;
    memset(&m, 0, sizeof(m));
    rows rs;
    memset(&rs, 0, sizeof(rs));
    report rep = { NULL, 0, 0 };
    size_t *idx = NULL;
    counts cnt = { 0 };
    if ((err = cli__call(ctx, "schema", NULL, 0, &schema)) != CLI_OK)
        goto out;
    if (map_path != NULL && (err = map_read(ctx, mapabs, schema, ndjson, &m)) != CLI_OK)
        goto out;
    if (ndjson)
        err = ndjson_rows(ctx, path, text, len, schema, &rs, &rep);
    else
        err = csv_rows(ctx, path, text, len, &m, &rs, &rep);
    if (err != CLI_OK)
        goto out;
    const char *key_name = m.key_name;
    if (key_name == NULL) {
        key_name = ndjson ? "_key" : "";
        for (size_t i = 0; i < m.n; i++)
            if (m.c[i].key)
                key_name = m.c[i].name[0] != '\0' ? m.c[i].name : m.c[i].column;
    }
    if (key_name[0] == '\0')
        key_name = "-"; /* no key column: no item carries a key */
    if ((idx = calloc(rs.n ? rs.n : 1, sizeof(*idx))) == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
        goto out;
    }
    /* 1. every row checked by the node's schema, nothing written */
    size_t nvalid = 0;
    for (size_t i = 0; i < rs.n && err == CLI_OK;) {
        size_t k = 0;
        for (; i < rs.n && k < BATCH_MAX; i++)
            if (!rs.v[i].refused)
                idx[k++] = i;
        if (k > 0) {
            counts dummy = { 0 };
            err = send_batch(ctx, &rs, idx, k, key_name, true, &rep, &dummy);
        }
    }
    for (size_t i = 0; i < rs.n; i++)
        nvalid += !rs.v[i].refused;
    size_t refused_checked = rs.n - nvalid;
    uint64_t t0 = mono_ms();
    bool tty = isatty(STDERR_FILENO) == 1;
    bool show = tty || !ctx->json;
    /* 2. the valid rows, in batches */
    size_t sent = 0;
    for (size_t i = 0; err == CLI_OK && !dry && i < rs.n;) {
        size_t k = 0;
        for (; i < rs.n && k < batch; i++)
            if (!rs.v[i].refused)
                idx[k++] = i;
        if (k == 0)
            break;
        err = send_batch(ctx, &rs, idx, k, key_name, false, &rep, &cnt);
        if (err == CLI_OK && m.ng > 0)
            err = grant_rows(ctx, &rs, idx, k, &m, &rep, &cnt);
        sent += k;
        if (err == CLI_OK && show)
            progress(tty, sent, nvalid, t0, sent == nvalid);
    }
    double secs = (double)(mono_ms() - t0) / 1000.0;
    if (err != CLI_OK) {
        size_t done = cnt.created + cnt.exists;
        /* Keep the node's sentence and say what is whole. */
        char why[CLI__MSG_MAX];
        snprintf(why, sizeof why, "%s", ctx->msg);
        cli_err code = ctx->err;
        ctx->err = CLI_OK;
        err = cli__fail(ctx, code,
            _("%s; %zu rows were imported before this (each whole); run the same import again to "
              "finish: rows already imported are skipped%s"),
            why, done, key_name[0] == '-' ? _(" only with a key column (the map has none)") : "");
        goto out;
    }
    if (rep.n > 0)
        qsort(rep.v, rep.n, sizeof(*rep.v), refusal_cmp);
    if (!ctx->json) {
        for (size_t i = 0; i < rep.n && i < REFUSED_SHOWN; i++)
            if (rep.v[i].column[0])
                fprintf(stderr, _("line %zu, column \"%s\": %s\n"), rep.v[i].line, rep.v[i].column,
                    rep.v[i].reason);
            else
                fprintf(stderr, _("line %zu: %s\n"), rep.v[i].line, rep.v[i].reason);
        if (rep.n > REFUSED_SHOWN)
            fprintf(stderr, _("(%zu more refused rows: --json lists them all)\n"),
                rep.n - REFUSED_SHOWN);
        if (dry)
            printf(_("checked %s: %zu rows, %zu valid, %zu refused (dry run: nothing written)\n"),
                path, rs.n, nvalid, refused_checked);
        else
            printf(_("imported %s: %zu rows, %zu created, %zu already imported, %zu refused "
                     "(%.1f s, %.0f rows/s, %zu deltas)\n"),
                path, rs.n, cnt.created, cnt.exists, rs.n - cnt.created - cnt.exists, secs,
                secs > 0 ? (double)(cnt.created + cnt.exists) / secs : 0.0, cnt.deltas);
        if (!dry && m.ng > 0)
            printf(_("grants: %zu given, %zu already in force\n"), cnt.granted, cnt.grants_stood);
    } else {
        json_object *o = json_object_new_object(), *ra = json_object_new_array();
        for (size_t i = 0; i < rep.n; i++) {
            json_object *r = json_object_new_object();
            json_object_object_add(r, "line", json_object_new_int64((int64_t)rep.v[i].line));
            json_object_object_add(
                r, "column", rep.v[i].column[0] ? json_object_new_string(rep.v[i].column) : NULL);
            json_object_object_add(r, "reason", json_object_new_string(rep.v[i].reason));
            json_object_array_add(ra, r);
        }
        json_object_object_add(o, "file", json_object_new_string(path));
        json_object_object_add(o, "format", json_object_new_string(ndjson ? "ndjson" : "csv"));
        json_object_object_add(o, "dry_run", json_object_new_boolean(dry));
        json_object_object_add(o, "rows", json_object_new_int64((int64_t)rs.n));
        json_object_object_add(o, "valid", json_object_new_int64((int64_t)nvalid));
        json_object_object_add(o, "created", json_object_new_int64((int64_t)cnt.created));
        json_object_object_add(o, "exists", json_object_new_int64((int64_t)cnt.exists));
        json_object_object_add(o, "refused",
            json_object_new_int64(
                (int64_t)(dry ? refused_checked : rs.n - cnt.created - cnt.exists)));
        json_object_object_add(o, "deltas", json_object_new_int64((int64_t)cnt.deltas));
        json_object_object_add(o, "granted", json_object_new_int64((int64_t)cnt.granted));
        json_object_object_add(
            o, "grants_in_force", json_object_new_int64((int64_t)cnt.grants_stood));
        json_object_object_add(o, "seconds", json_object_new_double(secs));
        json_object_object_add(
            o, "node_write_seconds", json_object_new_double((double)cnt.node_us / 1e6));
        json_object_object_add(o, "refused_rows", ra);
        err = cli__json_print(ctx, o);
        json_object_put(o);
        ctx->printed = err == CLI_OK;
    }
    if (err == CLI_OK && rep.n > 0)
        err = cli__fail(ctx, CLI_EINPUT,
            dry ? _("%zu of %zu rows refused (dry run: nothing written)")
                : _("%zu of %zu rows refused; the others were imported"),
            rep.n, rs.n);
out:
    free(idx);
    free(rep.v);
    rows_free(&rs);
    free(m.c);
    json_object_put(m.doc);
    json_object_put(schema);
    free(text);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Export                                                                                    */

static const char *label_of(json_object *o)
{
    const char *l = cli__json_str(o, "label");
    return l != NULL ? l : "";
}

static char *now_rfc3339(char buf[32])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

/* The beneficiary's copy as JSON: scopes with labels, fields with labels, the access log. */
static json_object *copy_json(json_object *show, json_object *schema)
{
    char at[32];
    json_object *o = json_object_new_object(), *sa = json_object_new_array();
    json_object_object_add(o, "case",
        json_object_new_string(cli__json_str(show, "id") ? cli__json_str(show, "id") : ""));
    json_object_object_add(o, "owner", json_object_get(jmember(show, "owner")));
    json_object_object_add(o, "exported_at", json_object_new_string(now_rfc3339(at)));
    json_object *scopes = jmember(show, "scopes");
    if (scopes != NULL && json_object_is_type(scopes, json_type_object)) {
        json_object_object_foreach(scopes, sname, fields)
        {
            json_object *sdef = NULL;
            (void)schema_field(schema, sname, NULL, &sdef);
            json_object *so = json_object_new_object(), *fa = json_object_new_array();
            json_object_object_add(so, "scope", json_object_new_string(sname));
            json_object_object_add(so, "label", json_object_new_string(label_of(sdef)));
            if (json_object_is_type(fields, json_type_object)) {
                json_object_object_foreach(fields, fname, value)
                {
                    json_object *fdef = schema_field(schema, sname, fname, NULL);
                    json_object *fo = json_object_new_object();
                    json_object_object_add(fo, "field", json_object_new_string(fname));
                    json_object_object_add(fo, "label", json_object_new_string(label_of(fdef)));
                    json_object_object_add(fo, "value", json_object_get(value));
                    json_object_array_add(fa, fo);
                }
            }
            json_object_object_add(so, "fields", fa);
            json_object_array_add(sa, so);
        }
    }
    json_object_object_add(o, "scopes", sa);
    json_object_object_add(o, "conflicts", json_object_get(jmember(show, "conflicts")));
    json_object_object_add(o, "access", json_object_get(jmember(show, "access")));
    return o;
}

static const char *value_text(json_object *v, char *buf, size_t n)
{
    if (v == NULL || json_object_is_type(v, json_type_null))
        return "";
    if (json_object_is_type(v, json_type_string))
        return json_object_get_string(v);
    if (json_object_is_type(v, json_type_array)) {
        size_t o = 0;
        buf[0] = '\0';
        for (size_t i = 0; i < json_object_array_length(v) && o < n; i++) {
            json_object *e = json_object_array_get_idx(v, i);
            const char *t = json_object_is_type(e, json_type_string)
                ? json_object_get_string(e)
                : json_object_to_json_string_ext(
                    e, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
            int w = snprintf(buf + o, n - o, "%s%s", i > 0 ? ", " : "", t);
            if (w < 0)
                break;
            o += (size_t)w;
        }
        return buf;
    }
    return json_object_to_json_string_ext(
        v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static void csv_line(const char *const *cells, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            putchar(';');
        csv_fwrite(stdout, cells[i], strlen(cells[i]));
    }
    fputs("\r\n", stdout);
}

/* The beneficiary's copy as CSV for Excel (UTF-8 with a BOM, ';'): one line per field, then one
 * per access-log entry. */
static void copy_csv(json_object *copy)
{
    static char buf[65536];
    fputs("\xEF\xBB\xBF", stdout);
    const char *head[]
        = { "caso", "titolare", "ambito", "etichetta ambito", "campo", "etichetta", "valore" };
    csv_line(head, 7);
    const char *id = cli__json_str(copy, "case"), *owner = cli__json_str(copy, "owner");
    id = id ? id : "";
    owner = owner ? owner : "";
    json_object *sa = jmember(copy, "scopes");
    for (size_t i = 0; sa != NULL && i < json_object_array_length(sa); i++) {
        json_object *s = json_object_array_get_idx(sa, i), *fa = jmember(s, "fields");
        for (size_t j = 0; fa != NULL && j < json_object_array_length(fa); j++) {
            json_object *f = json_object_array_get_idx(fa, j);
            const char *cells[]
                = { id, owner, cli__json_str(s, "scope"), label_of(s), cli__json_str(f, "field"),
                      label_of(f), value_text(jmember(f, "value"), buf, sizeof buf) };
            csv_line(cells, 7);
        }
    }
    json_object *acc = jmember(copy, "access");
    if (acc != NULL && json_object_is_type(acc, json_type_object)) {
        json_object_object_foreach(acc, scope, entries)
        {
            for (size_t j = 0; j < json_object_array_length(entries); j++) {
                json_object *e = json_object_array_get_idx(entries, j);
                char num[32], label[64];
                json_object *nv = jmember(e, "number");
                snprintf(num, sizeof num, "accesso #%lld",
                    (long long)(nv ? json_object_get_int64(nv) : 0));
                const char *kind = cli__json_str(e, "kind");
                snprintf(label, sizeof label, "%s", kind ? kind : "");
                const char *cells[] = { id, owner, scope, "registro degli accessi", num, label,
                    json_object_to_json_string_ext(
                        e, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE) };
                csv_line(cells, 7);
            }
        }
    }
}

cli_err cli__case_export(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *format = NULL;
    cli__opt opts[] = { { "format", &format, NULL } };
    const char **pos = calloc((size_t)argc + 1, sizeof *pos);
    size_t npos = 0;
    if (pos == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 1, pos, 1, 1, &npos);
    const char *idtext = pos[0];
    free(pos);
    if (err != CLI_OK)
        return err;
    if (format != NULL && strcmp(format, "json") != 0 && strcmp(format, "csv") != 0)
        return cli__usage(ctx, cmd, _("--format is json or csv"));
    proto_case_id id;
    proto_err perr = proto_case_id_parse(idtext, strlen(idtext), &id);
    if (perr != PROTO_OK)
        return cli__fail(ctx, perr == PROTO_ECHECKSUM ? CLI_EINPUT : CLI_EUSAGE,
            perr == PROTO_ECHECKSUM
                ? _("'%s' is not a case id: its checksum does not match (a character is mistyped)")
                : _("'%s' is not a case id"),
            idtext);
    char canon[PROTO_CASE_ID_TEXT_SIZE];
    proto_case_id_format(&id, canon);
    char dirbuf[PATH_MAX];
    absolute_dir(ctx, dirbuf);
    json_object *schema = NULL, *show = NULL;
    proto_bytes arg = { (const uint8_t *)canon, strlen(canon) };
    if ((err = cli__call(ctx, "schema", NULL, 0, &schema)) == CLI_OK
        && (err = cli__call(ctx, "case.show", &arg, 1, &show)) == CLI_OK) {
        json_object *copy = copy_json(show, schema);
        if (format != NULL && strcmp(format, "csv") == 0)
            copy_csv(copy);
        else
            err = cli__json_print(ctx, copy);
        json_object_put(copy);
        if (err == CLI_OK && (fflush(stdout) != 0 || ferror(stdout)))
            err = cli__fail(ctx, CLI_EINTERNAL, _("cannot write to stdout"));
    }
    json_object_put(schema);
    json_object_put(show);
    return err;
}

cli_err cli__export(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv)
{
    const char *format = NULL;
    bool all = false;
    cli__opt opts[] = { { "format", &format, NULL }, { "all", NULL, &all } };
    const char *pos[1];
    size_t npos = 0;
    cli_err err = cli__parse(ctx, cmd, argc, argv, opts, 2, pos, 0, 0, &npos);
    if (err != CLI_OK)
        return err;
    if (!all)
        return cli__usage(ctx, cmd, _("give --all (the whole readable caseload)"));
    if (format != NULL && strcmp(format, "ndjson") != 0)
        return cli__usage(ctx, cmd, _("--format is ndjson"));
    char dirbuf[PATH_MAX];
    absolute_dir(ctx, dirbuf);
    json_object *list = NULL;
    if ((err = cli__call(ctx, "case.list", NULL, 0, &list)) != CLI_OK)
        return err;
    json_object *cases = jmember(list, "cases");
    size_t n = cases != NULL && json_object_is_type(cases, json_type_array)
        ? json_object_array_length(cases)
        : 0;
    size_t written = 0;
    for (size_t i = 0; i < n && err == CLI_OK; i++) {
        const char *id = cli__json_str(json_object_array_get_idx(cases, i), "id");
        if (id == NULL)
            continue;
        proto_bytes arg = { (const uint8_t *)id, strlen(id) };
        json_object *show = NULL;
        err = cli__call(ctx, "case.show", &arg, 1, &show);
        if (err == CLI_ENOTFOUND) { /* purged meanwhile */
            ctx->err = CLI_OK;
            ctx->msg[0] = '\0';
            err = CLI_OK;
            continue;
        }
        if (err != CLI_OK)
            break;
        json_object *line = json_object_new_object();
        json_object_object_add(line, "_key", json_object_new_string(id));
        json_object_object_add(line, "_owner", json_object_get(jmember(show, "owner")));
        json_object *scopes = jmember(show, "scopes");
        if (scopes != NULL && json_object_is_type(scopes, json_type_object)) {
            json_object_object_foreach(scopes, sname, fields)
            {
                if (!json_object_is_type(fields, json_type_object))
                    continue;
                json_object_object_foreach(fields, fname, value)
                {
                    char key[160];
                    snprintf(key, sizeof key, "%s.%s", sname, fname);
                    json_object_object_add(line, key, json_object_get(value));
                }
            }
        }
        printf("%s\n",
            json_object_to_json_string_ext(
                line, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
        written++;
        json_object_put(line);
        json_object_put(show);
    }
    json_object_put(list);
    if (err == CLI_OK && (fflush(stdout) != 0 || ferror(stdout)))
        err = cli__fail(ctx, CLI_EINTERNAL, _("cannot write to stdout"));
    if (err == CLI_OK && !ctx->json)
        fprintf(stderr, P_("exported %zu case\n", "exported %zu cases\n", written), written);
    return err;
}
