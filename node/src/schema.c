/* The schema file (JSON, read with json-c) and the validation of operator edits against it.
 * The format is specified in node/SCHEMA.md; keep the two in step. May call: common.c, proto
 * (names, text and dates), crdt (field types). */
#include "internal.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

#include <proto/proto.h>

#define NAME_MAX_LEN 32
#define LABEL_MAX_LEN 200
#define ENUM_VALUE_MAX 64
#define TEXT_MAX_DEFAULT 1000
#define TEXT_MAX_LIMIT 65536
#define EVENT_MAX 16384
#define COUNTER_STEP_MAX 1000000000
#define NUMBER_LIMIT INT64_C(1000000000000) /* bounds of a number field's min and max */

static const char *const ftype_names[]
    = { "text", "set", "date", "enum", "number", "counter", "timeline" };
static const node_ftype ftype_values[] = { NODE_F_TEXT, NODE_F_SET, NODE_F_DATE, NODE_F_ENUM,
    NODE_F_NUMBER, NODE_F_COUNTER, NODE_F_TIMELINE };

const char *node_ftype_name(node_ftype type)
{
    for (size_t i = 0; i < sizeof(ftype_values) / sizeof(ftype_values[0]); i++)
        if (ftype_values[i] == type)
            return ftype_names[i];
    return "?";
}

crdt_type node_ftype_crdt(node_ftype type)
{
    switch (type) {
    case NODE_F_SET:
        return CRDT_SET;
    case NODE_F_COUNTER:
        return CRDT_COUNTER;
    case NODE_F_TIMELINE:
        return CRDT_TIMELINE;
    case NODE_F_TEXT:
    case NODE_F_DATE:
    case NODE_F_ENUM:
    case NODE_F_NUMBER:
        break;
    }
    return CRDT_REGISTER;
}

static void field_fini(node_field *f)
{
    free(f->name);
    free(f->label);
    for (size_t i = 0; i < f->nvalues; i++)
        free(f->values[i]);
    free(f->values);
}

void node_schema_free(node_schema *schema)
{
    if (schema == NULL)
        return;
    for (size_t i = 0; i < schema->nscopes; i++) {
        node_scope_def *s = &schema->scopes[i];
        for (size_t j = 0; j < s->nfields; j++)
            field_fini(&s->fields[j]);
        free(s->fields);
        free(s->name);
        free(s->label);
    }
    free(schema->scopes);
    free(schema->name);
    free(schema);
}

const node_scope_def *node_schema_scope(const node_schema *schema, const char *scope)
{
    if (schema == NULL || scope == NULL)
        return NULL;
    for (size_t i = 0; i < schema->nscopes; i++)
        if (strcmp(schema->scopes[i].name, scope) == 0)
            return &schema->scopes[i];
    return NULL;
}

const node_field *node_schema_field(const node_schema *schema, const char *scope, const char *field)
{
    const node_scope_def *s = node_schema_scope(schema, scope);
    if (s == NULL || field == NULL)
        return NULL;
    for (size_t i = 0; i < s->nfields; i++)
        if (strcmp(s->fields[i].name, field) == 0)
            return &s->fields[i];
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Parsing                                                                                   */

typedef struct parser {
    const char *origin;
    node_errmsg *msg;
    node_err err;
} parser;

static bool fail(parser *p, const char *path, const char *fmt, ...) NODE_PRINTF(3, 4);
static bool fail(parser *p, const char *path, const char *fmt, ...)
{
    if (p->err != NODE_OK)
        return false;
    p->err = NODE_ECONFIG;
    if (p->msg != NULL) {
        char what[300];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        snprintf(p->msg->text, sizeof(p->msg->text), "%s: %s%s%s", p->origin, path,
            path[0] ? ": " : "", what);
    }
    return false;
}

static bool oom(parser *p)
{
    if (p->err == NODE_OK) {
        p->err = NODE_ENOMEM;
        if (p->msg != NULL)
            snprintf(p->msg->text, sizeof(p->msg->text), "%s: out of memory", p->origin);
    }
    return false;
}

/* A scope or field name: a scope name of the protocol without '-', which the edit grammar
 * reads as part of "-=". */
static bool name_ok(const char *s)
{
    return proto_scope_name_valid(s, strlen(s)) && strchr(s, '-') == NULL;
}

/* Every key of obj must be one of `allowed` (NULL-terminated). */
static bool only_keys(parser *p, const char *path, json_object *obj, const char *const *allowed)
{
    json_object_object_foreach(obj, key, val)
    {
        (void)val;
        bool ok = false;
        for (size_t i = 0; allowed[i] != NULL && !ok; i++)
            ok = strcmp(key, allowed[i]) == 0;
        if (!ok)
            return fail(p, path, "unknown key \"%s\"", key);
    }
    return true;
}

/* A required (or optional, with *out left NULL) string member, copied. */
static bool get_string(parser *p, const char *path, json_object *obj, const char *key,
    bool required, size_t maxlen, char **out)
{
    json_object *v;
    *out = NULL;
    if (!json_object_object_get_ex(obj, key, &v)) {
        if (required)
            return fail(p, path, "missing \"%s\"", key);
        return true;
    }
    if (!json_object_is_type(v, json_type_string))
        return fail(p, path, "\"%s\" must be a string", key);
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (n == 0 || n > maxlen || strlen(s) != n)
        return fail(p, path, "\"%s\" must be 1 to %zu bytes", key, maxlen);
    if ((*out = strdup(s)) == NULL)
        return oom(p);
    return true;
}

static bool get_int(parser *p, const char *path, json_object *obj, const char *key, bool required,
    int64_t lo, int64_t hi, int64_t *out)
{
    json_object *v;
    if (!json_object_object_get_ex(obj, key, &v)) {
        if (required)
            return fail(p, path, "missing \"%s\"", key);
        return true;
    }
    if (!json_object_is_type(v, json_type_int))
        return fail(p, path, "\"%s\" must be a whole number", key);
    errno = 0;
    int64_t x = json_object_get_int64(v);
    if (errno != 0 || x < lo || x > hi)
        return fail(p, path, "\"%s\" must be from %lld to %lld", key, (long long)lo, (long long)hi);
    *out = x;
    return true;
}

static bool parse_values(parser *p, const char *path, json_object *obj, node_field *f)
{
    json_object *arr;
    if (!json_object_object_get_ex(obj, "values", &arr))
        return fail(p, path, "an enum needs \"values\"");
    if (!json_object_is_type(arr, json_type_array) || json_object_array_length(arr) == 0
        || json_object_array_length(arr) > 256)
        return fail(p, path, "\"values\" must be an array of 1 to 256 strings");
    size_t n = json_object_array_length(arr);
    if ((f->values = calloc(n, sizeof(*f->values))) == NULL)
        return oom(p);
    for (size_t i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(arr, i);
        size_t len
            = json_object_is_type(v, json_type_string) ? (size_t)json_object_get_string_len(v) : 0;
        const char *s = len ? json_object_get_string(v) : "";
        if (len == 0 || len > ENUM_VALUE_MAX || strlen(s) != len || strchr(s, ' ') != NULL)
            return fail(p, path, "values[%zu] must be a string of 1 to %d bytes without spaces", i,
                ENUM_VALUE_MAX);
        for (size_t j = 0; j < f->nvalues; j++)
            if (strcmp(f->values[j], s) == 0)
                return fail(p, path, "values[%zu] \"%s\" is listed twice", i, s);
        if ((f->values[f->nvalues] = strdup(s)) == NULL)
            return oom(p);
        f->nvalues++;
    }
    return true;
}

static bool ftype_parse(const char *s, node_ftype *out)
{
    for (size_t i = 0; i < sizeof(ftype_values) / sizeof(ftype_values[0]); i++) {
        if (strcmp(s, ftype_names[i]) == 0) {
            *out = ftype_values[i];
            return true;
        }
    }
    return false;
}

/* The parameters of a text or enum (also as the element type of a set). */
static bool parse_params(parser *p, const char *path, json_object *obj, node_ftype t, node_field *f)
{
    if (t == NODE_F_TEXT) {
        int64_t max = TEXT_MAX_DEFAULT;
        if (!get_int(p, path, obj, "max", false, 1, TEXT_MAX_LIMIT, &max))
            return false;
        f->max_len = (size_t)max;
    } else if (t == NODE_F_ENUM) {
        return parse_values(p, path, obj, f);
    }
    return true;
}

static const struct {
    const char *name;
    node_field_check check;
} checks[] = { { "codice_fiscale", NODE_CHECK_CODICE_FISCALE }, { "email", NODE_CHECK_EMAIL },
    { "not_future", NODE_CHECK_NOT_FUTURE } };

const char *node_check_name(node_field_check check)
{
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
        if (checks[i].check == check)
            return checks[i].name;
    return "";
}

/* A field's "check": known, and for its type (text, or a set of text, for codice_fiscale and
 * email; date for not_future). */
static bool check_parse(parser *p, const char *path, const char *name, node_field *f)
{
    for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++) {
        if (strcmp(name, checks[i].name) != 0)
            continue;
        bool text = f->type == NODE_F_TEXT || (f->type == NODE_F_SET && f->of == NODE_F_TEXT);
        bool fits = checks[i].check == NODE_CHECK_NOT_FUTURE ? f->type == NODE_F_DATE : text;
        /* f->of is parsed later: a set is let through here and checked in parse_field */
        if (!fits && f->type != NODE_F_SET)
            return fail(p, path, "check \"%s\" applies to a %s field", name,
                checks[i].check == NODE_CHECK_NOT_FUTURE ? "date" : "text");
        f->check = checks[i].check;
        return true;
    }
    return fail(p, path, "check \"%s\" is not one of codice_fiscale email not_future", name);
}

static bool parse_field(parser *p, const char *path, json_object *obj, node_field *f)
{
    if (!json_object_is_type(obj, json_type_object))
        return fail(p, path, "must be an object");
    static const char *const keys[]
        = { "name", "label", "type", "of", "max", "min", "values", "check", NULL };
    char *type = NULL, *check = NULL;
    bool ok = only_keys(p, path, obj, keys)
        && get_string(p, path, obj, "name", true, NAME_MAX_LEN, &f->name)
        && get_string(p, path, obj, "label", false, LABEL_MAX_LEN, &f->label)
        && get_string(p, path, obj, "type", true, 16, &type)
        && get_string(p, path, obj, "check", false, 32, &check);
    if (ok && !name_ok(f->name))
        ok = fail(p, path, "name \"%s\" must be 1 to 32 of a-z 0-9 _", f->name);
    if (ok && !ftype_parse(type, &f->type))
        ok = fail(
            p, path, "type \"%s\" is not one of text date enum number set counter timeline", type);
    free(type);
    if (ok && check != NULL)
        ok = check_parse(p, path, check, f);
    free(check);
    if (!ok)
        return false;
    json_object *tmp;
    bool has_of = json_object_object_get_ex(obj, "of", &tmp);
    bool has_values = json_object_object_get_ex(obj, "values", &tmp);
    bool has_max = json_object_object_get_ex(obj, "max", &tmp);
    bool has_min = json_object_object_get_ex(obj, "min", &tmp);
    switch (f->type) {
    case NODE_F_SET: {
        char *of = NULL;
        if (!get_string(p, path, obj, "of", true, 16, &of))
            return false;
        bool known = ftype_parse(of, &f->of) && (f->of == NODE_F_TEXT || f->of == NODE_F_ENUM);
        free(of);
        if (!known)
            return fail(p, path, "a set's \"of\" must be \"text\" or \"enum\"");
        if ((has_values && f->of != NODE_F_ENUM) || has_min || (has_max && f->of != NODE_F_TEXT))
            return fail(p, path, "a set of %s takes %s", node_ftype_name(f->of),
                f->of == NODE_F_TEXT ? "\"max\" only" : "\"values\" only");
        if (f->check != NODE_CHECK_NONE
            && (f->of != NODE_F_TEXT || f->check == NODE_CHECK_NOT_FUTURE))
            return fail(p, path, "check \"%s\" does not apply to a set of %s",
                node_check_name(f->check), node_ftype_name(f->of));
        return parse_params(p, path, obj, f->of, f);
    }
    case NODE_F_TEXT:
        if (has_of || has_values || has_min)
            return fail(p, path, "a text field takes \"max\" only");
        return parse_params(p, path, obj, NODE_F_TEXT, f);
    case NODE_F_ENUM:
        if (has_of || has_max || has_min)
            return fail(p, path, "an enum field takes \"values\" only");
        return parse_params(p, path, obj, NODE_F_ENUM, f);
    case NODE_F_NUMBER:
        if (has_of || has_values)
            return fail(p, path, "a number field takes \"min\" and \"max\" only");
        f->min = -NUMBER_LIMIT;
        f->max = NUMBER_LIMIT;
        if (!get_int(p, path, obj, "min", false, -NUMBER_LIMIT, NUMBER_LIMIT, &f->min)
            || !get_int(p, path, obj, "max", false, -NUMBER_LIMIT, NUMBER_LIMIT, &f->max))
            return false;
        if (f->min > f->max)
            return fail(p, path, "\"min\" is larger than \"max\"");
        return true;
    case NODE_F_DATE:
    case NODE_F_COUNTER:
    case NODE_F_TIMELINE:
        if (has_of || has_values || has_max || has_min)
            return fail(p, path, "a %s field takes no parameters", node_ftype_name(f->type));
        return true;
    }
    return true;
}

static bool parse_scope(parser *p, const char *path, json_object *obj, node_scope_def *s)
{
    if (!json_object_is_type(obj, json_type_object))
        return fail(p, path, "must be an object");
    static const char *const keys[] = { "name", "label", "fields", NULL };
    if (!only_keys(p, path, obj, keys)
        || !get_string(p, path, obj, "name", true, NAME_MAX_LEN, &s->name)
        || !get_string(p, path, obj, "label", false, LABEL_MAX_LEN, &s->label))
        return false;
    if (!name_ok(s->name))
        return fail(p, path, "name \"%s\" must be 1 to 32 of a-z 0-9 _", s->name);
    json_object *arr;
    if (!json_object_object_get_ex(obj, "fields", &arr)
        || !json_object_is_type(arr, json_type_array) || json_object_array_length(arr) == 0
        || json_object_array_length(arr) > 256)
        return fail(p, path, "\"fields\" must be an array of 1 to 256 fields");
    size_t n = json_object_array_length(arr);
    if ((s->fields = calloc(n, sizeof(*s->fields))) == NULL)
        return oom(p);
    for (size_t i = 0; i < n; i++) {
        char sub[128];
        snprintf(sub, sizeof(sub), "%s.fields[%zu]", path, i);
        node_field *f = &s->fields[s->nfields];
        s->nfields++; /* counted first, so node_schema_free releases a half-parsed field */
        if (!parse_field(p, sub, json_object_array_get_idx(arr, i), f))
            return false;
        for (size_t j = 0; j + 1 < s->nfields; j++)
            if (strcmp(s->fields[j].name, f->name) == 0)
                return fail(
                    p, sub, "field \"%s\" is defined twice in scope \"%s\"", f->name, s->name);
    }
    return true;
}

node_err node_schema_parse(
    const char *json, size_t len, const char *origin, node_schema **out, node_errmsg *msg)
{
    if (json == NULL || out == NULL || len > INT32_MAX)
        return NODE_EINVAL;
    parser p = { origin ? origin : "schema", msg, NODE_OK };
    node_schema *schema = calloc(1, sizeof(*schema));
    json_tokener *tok = json_tokener_new();
    json_object *root = NULL;
    if (schema == NULL || tok == NULL) {
        oom(&p);
        goto done;
    }
    root = json_tokener_parse_ex(tok, json, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    while (end < len
        && (json[end] == ' ' || json[end] == '\n' || json[end] == '\r' || json[end] == '\t'))
        end++;
    if (root == NULL || jerr != json_tokener_success || end != len) {
        fail(&p, "", "not valid JSON near byte %zu (%s)", json_tokener_get_parse_end(tok),
            root == NULL || jerr != json_tokener_success ? json_tokener_error_desc(jerr)
                                                         : "text after the end");
        goto done;
    }
    if (!json_object_is_type(root, json_type_object)) {
        fail(&p, "", "the schema must be a JSON object");
        goto done;
    }
    static const char *const keys[] = { "schema", "version", "scopes", NULL };
    if (!only_keys(&p, "", root, keys)
        || !get_string(&p, "", root, "schema", true, LABEL_MAX_LEN, &schema->name)
        || !get_int(&p, "", root, "version", true, 1, INT32_MAX, &schema->version))
        goto done;
    json_object *arr;
    if (!json_object_object_get_ex(root, "scopes", &arr)
        || !json_object_is_type(arr, json_type_array) || json_object_array_length(arr) == 0
        || json_object_array_length(arr) > 64) {
        fail(&p, "", "\"scopes\" must be an array of 1 to 64 scopes");
        goto done;
    }
    size_t n = json_object_array_length(arr);
    if ((schema->scopes = calloc(n, sizeof(*schema->scopes))) == NULL) {
        oom(&p);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), "scopes[%zu]", i);
        node_scope_def *s = &schema->scopes[schema->nscopes++];
        if (!parse_scope(&p, path, json_object_array_get_idx(arr, i), s))
            goto done;
        for (size_t j = 0; j + 1 < schema->nscopes; j++)
            if (strcmp(schema->scopes[j].name, s->name) == 0) {
                fail(&p, path, "scope \"%s\" is defined twice", s->name);
                goto done;
            }
    }
done:
    if (root != NULL)
        json_object_put(root);
    if (tok != NULL)
        json_tokener_free(tok);
    if (p.err != NODE_OK) {
        node_schema_free(schema);
        return p.err;
    }
    *out = schema;
    return NODE_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Checking edits                                                                            */

/* A decimal integer: optional '-', digits only. */
static bool integer(const char *s, int64_t *out)
{
    const char *d = s[0] == '-' ? s + 1 : s;
    if (*d == 0 || strspn(d, "0123456789") != strlen(d))
        return false;
    errno = 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (errno != 0 || *end != 0)
        return false;
    *out = x;
    return true;
}

static node_err refuse(node_errmsg *msg, const node_scope_def *scope, const node_field *field,
    const char *fmt, ...) NODE_PRINTF(4, 5);
static node_err refuse(
    node_errmsg *msg, const node_scope_def *scope, const node_field *field, const char *fmt, ...)
{
    if (msg != NULL) {
        char what[400];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(what, sizeof(what), fmt, ap);
        va_end(ap);
        snprintf(msg->text, sizeof(msg->text), "%s.%s %s", scope->name, field->name, what);
    }
    return NODE_EINVAL;
}

static node_err put(node_errmsg *msg, const node_scope_def *scope, const node_field *field,
    const char *value, char *out, size_t outsize)
{
    size_t n = strlen(value);
    if (n >= outsize)
        return refuse(msg, scope, field, "value is too long (%zu bytes)", n);
    memcpy(out, value, n + 1);
    return NODE_OK;
}

/* A scalar of type t (text, date, enum, number) as a register value or set element. */
static node_err check_scalar(const node_scope_def *scope, const node_field *field, node_ftype t,
    const char *value, char *out, size_t outsize, node_errmsg *msg)
{
    size_t n = strlen(value);
    int64_t x;
    switch (t) {
    case NODE_F_TEXT:
        if (n > field->max_len)
            return refuse(msg, scope, field, "is at most %zu bytes (got %zu)", field->max_len, n);
        if (!proto_utf8_valid(value, n))
            return refuse(
                msg, scope, field, "must be UTF-8 text without control characters or newlines");
        if (!proto_text_valid(value, n, field->max_len))
            return refuse(msg, scope, field, "cannot be %s: use 'patto case unset' to remove it",
                n == 0 ? "empty" : "only spaces");
        return put(msg, scope, field, value, out, outsize);
    case NODE_F_DATE: {
        proto_date d;
        if (proto_date_parse(value, n, &d) != PROTO_OK)
            return refuse(msg, scope, field,
                "must be a date YYYY-MM-DD, a day that exists, years %d-%d (got '%s')",
                PROTO_DATE_YEAR_MIN, PROTO_DATE_YEAR_MAX, value);
        return put(msg, scope, field, value, out, outsize);
    }
    case NODE_F_ENUM: {
        for (size_t i = 0; i < field->nvalues; i++)
            if (strcmp(value, field->values[i]) == 0)
                return put(msg, scope, field, value, out, outsize);
        char list[300] = "";
        for (size_t i = 0, k = 0; i < field->nvalues && k + 1 < sizeof(list); i++)
            k += (size_t)snprintf(
                list + k, sizeof(list) - k, "%s%s", i ? " " : "", field->values[i]);
        return refuse(msg, scope, field, "must be one of %s (got '%s')", list, value);
    }
    case NODE_F_NUMBER:
        if (!integer(value, &x) || x < field->min || x > field->max)
            return refuse(msg, scope, field, "must be a whole number from %lld to %lld (got '%s')",
                (long long)field->min, (long long)field->max, value);
        if ((size_t)snprintf(out, outsize, "%lld", (long long)x) >= outsize)
            return NODE_EINVAL;
        return NODE_OK;
    case NODE_F_SET:
    case NODE_F_COUNTER:
    case NODE_F_TIMELINE:
        break;
    }
    return NODE_EINVAL;
}

node_err node_schema_check(const node_scope_def *scope, const node_field *field, node_edit_op op,
    const char *value, char *out, size_t outsize, int64_t *amount, node_errmsg *msg)
{
    if (scope == NULL || field == NULL || value == NULL || out == NULL || outsize == 0)
        return NODE_EINVAL;
    const char *opname = op == NODE_EDIT_SET ? "=" : op == NODE_EDIT_ADD ? "+=" : "-=";
    switch (field->type) {
    case NODE_F_TEXT:
    case NODE_F_DATE:
    case NODE_F_ENUM:
    case NODE_F_NUMBER:
        if (op != NODE_EDIT_SET)
            return refuse(msg, scope, field, "is a %s: '%s' does not apply, use = to set it",
                node_ftype_name(field->type), opname);
        return check_scalar(scope, field, field->type, value, out, outsize, msg);
    case NODE_F_SET:
        if (op == NODE_EDIT_SET)
            return refuse(
                msg, scope, field, "is a set: '=' does not apply, use += to add or -= to remove");
        return check_scalar(scope, field, field->of, value, out, outsize, msg);
    case NODE_F_COUNTER: {
        int64_t x;
        if (op == NODE_EDIT_SET)
            return refuse(msg, scope, field,
                "is a counter: '=' does not apply, use += N to add or -= N to subtract");
        if (!integer(value, &x) || x <= 0 || x > COUNTER_STEP_MAX)
            return refuse(msg, scope, field, "takes a whole number from 1 to %d (got '%s')",
                COUNTER_STEP_MAX, value);
        if (amount != NULL)
            *amount = op == NODE_EDIT_REMOVE ? -x : x;
        if ((size_t)snprintf(out, outsize, "%lld", (long long)x) >= outsize)
            return NODE_EINVAL;
        return NODE_OK;
    }
    case NODE_F_TIMELINE: {
        if (op != NODE_EDIT_ADD)
            return refuse(msg, scope, field,
                "is a timeline: only += applies, with a JSON object for the event");
        size_t n = strlen(value);
        if (n > EVENT_MAX)
            return refuse(msg, scope, field, "event is larger than %d bytes", EVENT_MAX);
        json_tokener *tok = json_tokener_new();
        if (tok == NULL)
            return NODE_ENOMEM;
        json_object *obj = json_tokener_parse_ex(tok, value, (int)n);
        bool ok = obj != NULL && json_tokener_get_error(tok) == json_tokener_success
            && json_tokener_get_parse_end(tok) == n && json_object_is_type(obj, json_type_object);
        json_tokener_free(tok);
        node_err err;
        if (!ok)
            err = refuse(msg, scope, field,
                "event must be one JSON object, e.g. "
                "'{\"tipo\":\"colloquio\",\"data\":\"2026-11-20\"}'");
        else
            err = put(msg, scope, field,
                json_object_to_json_string_ext(
                    obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
                out, outsize);
        json_object_put(obj);
        return err;
    }
    }
    return NODE_EINVAL;
}

/* ---------------------------------------------------------------------------------------- */
/* A newer schema only grows the one in force                                               */

static bool has_value(const node_field *f, const char *v)
{
    for (size_t i = 0; i < f->nvalues; i++)
        if (strcmp(f->values[i], v) == 0)
            return true;
    return false;
}

/* Does field b (newer) admit everything field a admits? NULL, or what it narrows. */
static const char *field_narrows(const node_field *a, const node_field *b, const char **value)
{
    *value = NULL;
    if (a->type != b->type || (a->type == NODE_F_SET && a->of != b->of))
        return "changes its type";
    bool text = a->type == NODE_F_TEXT || (a->type == NODE_F_SET && a->of == NODE_F_TEXT);
    bool enumerated = a->type == NODE_F_ENUM || (a->type == NODE_F_SET && a->of == NODE_F_ENUM);
    if (text && b->max_len < a->max_len)
        return "lowers its maximum length";
    if (a->type == NODE_F_NUMBER && (b->min > a->min || b->max < a->max))
        return "narrows its range";
    for (size_t i = 0; enumerated && i < a->nvalues; i++)
        if (!has_value(b, a->values[i])) {
            *value = a->values[i];
            return "drops the value";
        }
    return NULL;
}

node_err node_schema_grows(const node_schema *old, const node_schema *new, node_errmsg *msg)
{
    for (size_t i = 0; i < old->nscopes; i++) {
        const node_scope_def *a = &old->scopes[i];
        const node_scope_def *b = node_schema_scope(new, a->name);
        if (b == NULL)
            return node__fail(msg, NODE_EINVAL, "it drops scope %s", a->name);
        for (size_t k = 0; k < a->nfields; k++) {
            const node_field *fa = &a->fields[k];
            const node_field *fb = node_schema_field(new, a->name, fa->name);
            if (fb == NULL)
                return node__fail(msg, NODE_EINVAL, "it drops field %s.%s", a->name, fa->name);
            const char *value;
            const char *why = field_narrows(fa, fb, &value);
            if (why != NULL)
                return node__fail(msg, NODE_EINVAL, "field %s.%s %s%s%s", a->name, fa->name, why,
                    value != NULL ? " " : "", value != NULL ? value : "");
        }
    }
    return NODE_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Semantic checks of local writes (a field's "check")                                      */

static bool upper(char c)
{
    return c >= 'A' && c <= 'Z';
}

static bool digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The check digit of an 11-digit provisional codice fiscale (the partita IVA rule): digits in
 * odd places (1st, 3rd, ...) add as they are, in even places doubled (less 9 above 9); the 11th
 * makes the sum of all a multiple of 10. */
static char provisional_check(const char *v)
{
    int sum = 0;
    for (int i = 0; i < 10; i++) {
        int x = v[i] - '0';
        if (i % 2 == 1 && (x *= 2) > 9)
            x -= 9;
        sum += x;
    }
    return (char)('0' + (10 - sum % 10) % 10);
}

/* The check character of a 16-character codice fiscale (DM 23/12/1976): the characters in
 * odd places map through the odd table, the others to their value, the sum modulo 26. */
static char cf_check(const char *v)
{
    static const int odd[26] = { 1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12,
        14, 16, 10, 22, 25, 24, 23 };
    int sum = 0;
    for (int i = 0; i < 15; i++) {
        int x = digit(v[i]) ? v[i] - '0' : v[i] - 'A';
        sum += i % 2 == 0 ? odd[x] : x;
    }
    return (char)('A' + sum % 26);
}

static node_err check_cf(
    const node_scope_def *scope, const node_field *field, const char *v, node_errmsg *msg)
{
    size_t n = strlen(v);
    if (n == 11 && strspn(v, "0123456789") == 11) {
        char c = provisional_check(v);
        if (v[10] != c)
            return refuse(msg, scope, field,
                "'%s' is not a provisional codice fiscale: its last digit should be %c, not %c "
                "(a digit is mistyped)",
                v, c, v[10]);
        return NODE_OK;
    }
    /* AAAAAA 99 A 99 A 999 A; a digit may be a letter L-V (omocodia) */
    static const char pattern[] = "LLLLLLNNLNNLNNNL";
    bool shape = n == 16;
    for (size_t i = 0; shape && i < 16; i++)
        shape = pattern[i] == 'L' ? upper(v[i]) : (digit(v[i]) || strchr("LMNPQRSTUV", v[i]));
    if (shape && strchr("ABCDEHLMPRST", v[8]) == NULL)
        shape = false;
    if (!shape)
        return refuse(msg, scope, field,
            "'%s' is not a codice fiscale: write the 16 characters in capitals (like "
            "RSSMRA85T10A562S) or the 11 digits of a provisional one",
            v);
    char c = cf_check(v);
    if (v[15] != c)
        return refuse(msg, scope, field,
            "'%s' is not a codice fiscale: its check character should be %c, not %c (a "
            "character is mistyped)",
            v, c, v[15]);
    return NODE_OK;
}

static bool email_ok(const char *v)
{
    const char *at = strchr(v, '@');
    if (at == NULL || strchr(at + 1, '@') != NULL)
        return false;
    size_t ll = (size_t)(at - v);
    if (ll == 0 || ll > 64 || v[0] == '.' || at[-1] == '.')
        return false;
    for (const char *p = v; p < at; p++)
        if (!(upper(*p) || digit(*p) || (*p >= 'a' && *p <= 'z')
                || strchr(".!#$%&'*+/=?^_`{|}~-", *p) != NULL)
            || (p[0] == '.' && p[1] == '.'))
            return false;
    const char *d = at + 1;
    size_t labels = 0;
    const char *last = d;
    for (const char *s = d;;) {
        const char *e = s;
        while (*e != 0 && *e != '.')
            e++;
        size_t l = (size_t)(e - s);
        if (l == 0 || l > 63 || s[0] == '-' || e[-1] == '-')
            return false;
        for (const char *p = s; p < e; p++)
            if (!(upper(*p) || digit(*p) || (*p >= 'a' && *p <= 'z') || *p == '-'))
                return false;
        labels++;
        last = s;
        if (*e == 0)
            break;
        s = e + 1;
    }
    size_t tl = strlen(last);
    bool tld = tl >= 2;
    for (size_t i = 0; i < tl; i++)
        tld = tld && !digit(last[i]) && last[i] != '-';
    return labels >= 2 && tld && strlen(d) <= 253;
}

node_err node_schema_check_local(const node_scope_def *scope, const node_field *field,
    const char *value, uint64_t now_ms, node_errmsg *msg)
{
    if (scope == NULL || field == NULL || value == NULL)
        return NODE_EINVAL;
    switch (field->check) {
    case NODE_CHECK_NONE:
        return NODE_OK;
    case NODE_CHECK_CODICE_FISCALE:
        return check_cf(scope, field, value, msg);
    case NODE_CHECK_EMAIL:
        if (!email_ok(value))
            return refuse(msg, scope, field,
                "'%s' is not an e-mail address: write it as name@domain.it", value);
        return NODE_OK;
    case NODE_CHECK_NOT_FUTURE: {
        proto_date d;
        proto_civil today;
        if (proto_date_parse(value, strlen(value), &d) != PROTO_OK)
            return NODE_OK; /* node_schema_check has refused it already */
        proto_rome_civil(now_ms, &today);
        long a = (long)d.year * 10000 + d.month * 100 + d.day;
        long b = (long)today.year * 10000 + today.month * 100 + today.day;
        if (a > b)
            return refuse(msg, scope, field,
                "cannot be in the future: %s is after today (%04d-%02d-%02d in Europe/Rome)", value,
                today.year, today.month, today.day);
        return NODE_OK;
    }
    }
    return NODE_OK;
}
