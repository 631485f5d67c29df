/* node.schema: the shipped schema parses; bad schema files are refused with the JSON path of
 * the problem; every edit is checked against its field's type with a sentence an operator can
 * act on, and values are stored in canonical form; a newer schema may only grow an older one. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "node/node.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(1 << 20);
    *len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    if (buf)
        buf[*len] = 0;
    return buf;
}

static int load_default(void **state)
{
    size_t len;
    char *json = slurp(PATTO_SOURCE_DIR "/node/schema/default.json", &len);
    if (json == NULL)
        return -1;
    node_schema *schema = NULL;
    node_errmsg msg = { { 0 } };
    node_err err = node_schema_parse(json, len, "default.json", &schema, &msg);
    free(json);
    if (err != NODE_OK) {
        fprintf(stderr, "default schema: %s\n", msg.text);
        return -1;
    }
    *state = schema;
    return 0;
}

static int free_schema(void **state)
{
    node_schema_free(*state);
    return 0;
}

static void default_schema_has_the_design_scopes(void **state)
{
    const node_schema *s = *state;
    const char *scopes[] = { "anagrafica", "documenti", "lingua", "competenze", "lavoro",
        "alloggio", "sociale", "piano", "servizi", "invii" };
    for (size_t i = 0; i < sizeof(scopes) / sizeof(scopes[0]); i++)
        assert_non_null(node_schema_scope(s, scopes[i]));
    struct {
        const char *scope, *field;
        node_ftype type;
        crdt_type crdt;
    } fields[] = {
        { "anagrafica", "nome", NODE_F_TEXT, CRDT_REGISTER },
        { "anagrafica", "cognome", NODE_F_TEXT, CRDT_REGISTER },
        { "anagrafica", "data_nascita", NODE_F_DATE, CRDT_REGISTER },
        { "documenti", "permesso_tipo", NODE_F_ENUM, CRDT_REGISTER },
        { "documenti", "permesso_scadenza", NODE_F_DATE, CRDT_REGISTER },
        { "lingua", "livello", NODE_F_ENUM, CRDT_REGISTER },
        { "lingua", "ore_frequenza", NODE_F_COUNTER, CRDT_COUNTER },
        { "competenze", "competenze", NODE_F_SET, CRDT_SET },
        { "servizi", "eventi", NODE_F_TIMELINE, CRDT_TIMELINE },
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        const node_field *f = node_schema_field(s, fields[i].scope, fields[i].field);
        assert_non_null(f);
        assert_int_equal(f->type, fields[i].type);
        assert_int_equal(node_ftype_crdt(f->type), fields[i].crdt);
    }
    assert_null(node_schema_field(s, "lingua", "nope"));
    assert_null(node_schema_field(s, "nope", "livello"));
    const node_field *lv = node_schema_field(s, "lingua", "livello");
    assert_int_equal(lv->nvalues, 7);
    assert_string_equal(lv->values[0], "pre-A1");
}

typedef struct edit_case {
    const char *scope, *field;
    node_edit_op op;
    const char *value;
    node_err err;
    const char *want; /* stored form on success, or text the error must contain */
} edit_case;

static void edits_are_checked(void **state)
{
    const node_schema *s = *state;
    static const edit_case cases[] = {
        { "anagrafica", "nome", NODE_EDIT_SET, "Amina", NODE_OK, "Amina" },
        { "anagrafica", "nome", NODE_EDIT_SET, "Zoë Ñandú", NODE_OK, "Zoë Ñandú" },
        { "anagrafica", "nome", NODE_EDIT_SET, "", NODE_EINVAL, "cannot be empty" },
        { "anagrafica", "nome", NODE_EDIT_SET, " ", NODE_EINVAL, "cannot be only spaces" },
        { "anagrafica", "nome", NODE_EDIT_SET, "   ", NODE_EINVAL, "cannot be only spaces" },
        { "anagrafica", "nome", NODE_EDIT_SET, " Amina ", NODE_OK, " Amina " },
        { "competenze", "competenze", NODE_EDIT_ADD, " ", NODE_EINVAL, "cannot be only spaces" },
        { "competenze", "competenze", NODE_EDIT_ADD, "\xc2\x85", NODE_EINVAL, "UTF-8" },
        { "anagrafica", "nome", NODE_EDIT_SET, "a\nb", NODE_EINVAL, "without control" },
        { "anagrafica", "nome", NODE_EDIT_SET, "\xc3\x28", NODE_EINVAL, "UTF-8" },
        { "anagrafica", "nome", NODE_EDIT_SET, "\xed\xa0\x80", NODE_EINVAL, "UTF-8" },
        { "anagrafica", "nome", NODE_EDIT_ADD, "x", NODE_EINVAL, "use = to set it" },
        { "anagrafica", "paese_nascita", NODE_EDIT_SET, "SENE", NODE_EINVAL, "at most 3 bytes" },
        { "anagrafica", "data_nascita", NODE_EDIT_SET, "1994-03-12", NODE_OK, "1994-03-12" },
        { "anagrafica", "data_nascita", NODE_EDIT_SET, "2023-02-29", NODE_EINVAL,
            "must be a date YYYY-MM-DD" },
        { "anagrafica", "data_nascita", NODE_EDIT_SET, "2024-02-29", NODE_OK, "2024-02-29" },
        { "anagrafica", "data_nascita", NODE_EDIT_SET, "12/03/1994", NODE_EINVAL, "YYYY-MM-DD" },
        { "anagrafica", "data_nascita", NODE_EDIT_SET, "2026-02-31", NODE_EINVAL,
            "a day that exists" },
        { "anagrafica", "data_nascita", NODE_EDIT_SET, "1950-01-01", NODE_OK, "1950-01-01" },
        { "anagrafica", "data_nascita", NODE_EDIT_SET, "1899-12-31", NODE_EINVAL,
            "years 1900-2200" },
        { "lingua", "livello", NODE_EDIT_SET, "B1", NODE_OK, "B1" },
        { "lingua", "livello", NODE_EDIT_SET, "b1", NODE_EINVAL,
            "lingua.livello must be one of pre-A1 A1 A2 B1 B2 C1 C2 (got 'b1')" },
        { "documenti", "crediti_accordo", NODE_EDIT_SET, "030", NODE_OK, "30" },
        { "documenti", "crediti_accordo", NODE_EDIT_SET, "61", NODE_EINVAL, "from 0 to 60" },
        { "documenti", "crediti_accordo", NODE_EDIT_SET, "3.5", NODE_EINVAL, "whole number" },
        { "competenze", "competenze", NODE_EDIT_ADD, "cucina", NODE_OK, "cucina" },
        { "competenze", "competenze", NODE_EDIT_REMOVE, "cucina", NODE_OK, "cucina" },
        { "competenze", "competenze", NODE_EDIT_SET, "cucina", NODE_EINVAL,
            "is a set: '=' does not apply, use += to add or -= to remove" },
        { "competenze", "patente", NODE_EDIT_ADD, "B", NODE_OK, "B" },
        { "competenze", "patente", NODE_EDIT_ADD, "Z", NODE_EINVAL, "must be one of AM A B" },
        { "lingua", "ore_frequenza", NODE_EDIT_ADD, "4", NODE_OK, "4" },
        { "lingua", "ore_frequenza", NODE_EDIT_SET, "4", NODE_EINVAL, "is a counter" },
        { "lingua", "ore_frequenza", NODE_EDIT_ADD, "-4", NODE_EINVAL, "from 1 to" },
        { "lingua", "ore_frequenza", NODE_EDIT_ADD, "quattro", NODE_EINVAL, "from 1 to" },
        { "servizi", "eventi", NODE_EDIT_ADD, "{ \"tipo\" : \"colloquio\", \"ore\": 2 }", NODE_OK,
            "{\"tipo\":\"colloquio\",\"ore\":2}" },
        { "servizi", "eventi", NODE_EDIT_ADD, "[1,2]", NODE_EINVAL, "one JSON object" },
        { "servizi", "eventi", NODE_EDIT_ADD, "{\"a\":1} x", NODE_EINVAL, "one JSON object" },
        { "servizi", "eventi", NODE_EDIT_SET, "{}", NODE_EINVAL, "only += applies" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const edit_case *c = &cases[i];
        const node_scope_def *sc = node_schema_scope(s, c->scope);
        const node_field *f = node_schema_field(s, c->scope, c->field);
        assert_non_null(f);
        char out[1024] = "";
        int64_t amount = 0;
        node_errmsg msg = { { 0 } };
        node_err err = node_schema_check(sc, f, c->op, c->value, out, sizeof(out), &amount, &msg);
        if (err != c->err)
            fail_msg("case %zu (%s.%s '%s'): got %s \"%s\"", i, c->scope, c->field, c->value,
                node_strerror(err), msg.text);
        if (err == NODE_OK && strcmp(out, c->want) != 0)
            fail_msg("case %zu: stored '%s', want '%s'", i, out, c->want);
        if (err != NODE_OK && strstr(msg.text, c->want) == NULL)
            fail_msg("case %zu: message \"%s\" lacks \"%s\"", i, msg.text, c->want);
    }
    /* The counter's signed amount follows the operator. */
    const node_scope_def *sc = node_schema_scope(s, "lingua");
    const node_field *f = node_schema_field(s, "lingua", "ore_frequenza");
    char out[32];
    int64_t amount = 0;
    assert_int_equal(
        node_schema_check(sc, f, NODE_EDIT_REMOVE, "3", out, sizeof(out), &amount, NULL), NODE_OK);
    assert_int_equal(amount, -3);
}

static void bad_schemas_name_the_place(void **state)
{
    (void)state;
    static const struct {
        const char *json, *says;
    } cases[] = {
        { "{", "not valid JSON" },
        { "[]", "must be a JSON object" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[]}", "\"scopes\" must be an array of 1" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[{\"name\":\"a\",\"fields\":[{\"name\":"
          "\"f\",\"type\":\"colour\"}]}]}",
            "scopes[0].fields[0]: type \"colour\" is not one of" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[{\"name\":\"a\",\"fields\":[{\"name\":"
          "\"f\",\"type\":\"enum\"}]}]}",
            "scopes[0].fields[0]: an enum needs \"values\"" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[{\"name\":\"a\",\"fields\":[{\"name\":"
          "\"f\",\"type\":\"text\"},{\"name\":\"f\",\"type\":\"date\"}]}]}",
            "scopes[0].fields[1]: field \"f\" is defined twice" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[{\"name\":\"A b\",\"fields\":[{\"name\":"
          "\"f\",\"type\":\"text\"}]}]}",
            "scopes[0]: name \"A b\" must be" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[{\"name\":\"a-b\",\"fields\":[{\"name\":"
          "\"f\",\"type\":\"text\"}]}]}",
            "scopes[0]: name \"a-b\" must be 1 to 32 of a-z 0-9 _" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[{\"name\":\"a\",\"fields\":[{\"name\":"
          "\"f-\",\"type\":\"counter\"}]}]}",
            "scopes[0].fields[0]: name \"f-\" must be" },
        { "{\"schema\":\"x\",\"version\":1,\"colour\":2,\"scopes\":[]}", "unknown key \"colour\"" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[{\"name\":\"a\",\"fields\":[{\"name\":"
          "\"f\",\"type\":\"text\",\"check\":\"iban\"}]}]}",
            "scopes[0].fields[0]: check \"iban\" is not one of codice_fiscale email not_future" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[{\"name\":\"a\",\"fields\":[{\"name\":"
          "\"f\",\"type\":\"text\",\"check\":\"not_future\"}]}]}",
            "scopes[0].fields[0]: check \"not_future\" applies to a date field" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[{\"name\":\"a\",\"fields\":[{\"name\":"
          "\"f\",\"type\":\"set\",\"of\":\"enum\",\"values\":[\"x\"],\"check\":\"email\"}]}]}",
            "scopes[0].fields[0]: check \"email\" does not apply to a set of enum" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[{\"name\":\"a\",\"fields\":[{\"name\":"
          "\"f\",\"type\":\"set\",\"of\":\"counter\"}]}]}",
            "a set's \"of\" must be" },
        { "{\"schema\":\"x\",\"version\":1,\"scopes\":[{\"name\":\"a\",\"fields\":[{\"name\":"
          "\"f\",\"type\":\"number\",\"min\":5,\"max\":1}]}]}",
            "\"min\" is larger than \"max\"" },
        { "{\"schema\":\"x\",\"version\":0,\"scopes\":[]}", "\"version\" must be from 1" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        node_schema *schema = NULL;
        node_errmsg msg = { { 0 } };
        node_err err
            = node_schema_parse(cases[i].json, strlen(cases[i].json), "t.json", &schema, &msg);
        if (err != NODE_ECONFIG || strstr(msg.text, cases[i].says) == NULL
            || strncmp(msg.text, "t.json: ", 8) != 0)
            fail_msg("case %zu: got %s \"%s\", want ECONFIG with \"%s\"", i, node_strerror(err),
                msg.text, cases[i].says);
        assert_null(schema);
    }
}

/* A newer schema may only grow the one in force: scopes, fields and enum values added and
 * labels changed are fine; a scope or field or value dropped, a type changed, a text made
 * shorter or a number range narrower are each refused with a sentence naming the field. */
static node_schema *parse(const char *json)
{
    node_schema *s = NULL;
    node_errmsg msg = { { 0 } };
    if (node_schema_parse(json, strlen(json), "test", &s, &msg) != NODE_OK)
        fail_msg("schema does not parse: %s (%s)", msg.text, json);
    return s;
}

#define BASE_SCOPES                                                                                \
    "{\"name\":\"s\",\"fields\":[{\"name\":\"t\",\"type\":\"text\",\"max\":20},"                   \
    "{\"name\":\"e\",\"type\":\"enum\",\"values\":[\"a\",\"b\"]},"                                 \
    "{\"name\":\"n\",\"type\":\"number\",\"min\":0,\"max\":10},"                                   \
    "{\"name\":\"k\",\"type\":\"set\",\"of\":\"enum\",\"values\":[\"x\",\"y\"]}]}"

static void schema_only_grows(void **state)
{
    (void)state;
    node_schema *old = parse("{\"schema\":\"t\",\"version\":1,\"scopes\":[" BASE_SCOPES "]}");
    static const struct {
        const char *json, *want; /* want NULL: grows */
    } cases[] = {
        { "{\"schema\":\"t\",\"version\":2,\"scopes\":[" BASE_SCOPES
          ",{\"name\":\"s2\",\"fields\":[{\"name\":\"d\",\"type\":\"date\"}]}]}",
            NULL },
        { "{\"schema\":\"t\",\"version\":2,\"scopes\":[{\"name\":\"s\",\"label\":\"new\","
          "\"fields\":[{\"name\":\"t\",\"type\":\"text\",\"max\":30,\"label\":\"T\"},"
          "{\"name\":\"e\",\"type\":\"enum\",\"values\":[\"a\",\"b\",\"c\"]},"
          "{\"name\":\"n\",\"type\":\"number\",\"min\":-5,\"max\":10},"
          "{\"name\":\"k\",\"type\":\"set\",\"of\":\"enum\",\"values\":[\"x\",\"y\",\"z\"]},"
          "{\"name\":\"u\",\"type\":\"counter\"}]}]}",
            NULL },
        { "{\"schema\":\"t\",\"version\":2,\"scopes\":[{\"name\":\"s2\",\"fields\":[{\"name\":"
          "\"d\",\"type\":\"date\"}]}]}",
            "it drops scope s" },
        { "{\"schema\":\"t\",\"version\":2,\"scopes\":[{\"name\":\"s\",\"fields\":["
          "{\"name\":\"t\",\"type\":\"text\",\"max\":20},"
          "{\"name\":\"e\",\"type\":\"enum\",\"values\":[\"a\",\"b\"]},"
          "{\"name\":\"n\",\"type\":\"number\",\"min\":0,\"max\":10}]}]}",
            "it drops field s.k" },
        { "{\"schema\":\"t\",\"version\":2,\"scopes\":[{\"name\":\"s\",\"fields\":["
          "{\"name\":\"t\",\"type\":\"text\",\"max\":19},"
          "{\"name\":\"e\",\"type\":\"enum\",\"values\":[\"a\",\"b\"]},"
          "{\"name\":\"n\",\"type\":\"number\",\"min\":0,\"max\":10},"
          "{\"name\":\"k\",\"type\":\"set\",\"of\":\"enum\",\"values\":[\"x\",\"y\"]}]}]}",
            "field s.t lowers its maximum length" },
        { "{\"schema\":\"t\",\"version\":2,\"scopes\":[{\"name\":\"s\",\"fields\":["
          "{\"name\":\"t\",\"type\":\"text\",\"max\":20},"
          "{\"name\":\"e\",\"type\":\"enum\",\"values\":[\"b\",\"c\"]},"
          "{\"name\":\"n\",\"type\":\"number\",\"min\":0,\"max\":10},"
          "{\"name\":\"k\",\"type\":\"set\",\"of\":\"enum\",\"values\":[\"x\",\"y\"]}]}]}",
            "field s.e drops the value a" },
        { "{\"schema\":\"t\",\"version\":2,\"scopes\":[{\"name\":\"s\",\"fields\":["
          "{\"name\":\"t\",\"type\":\"text\",\"max\":20},"
          "{\"name\":\"e\",\"type\":\"enum\",\"values\":[\"a\",\"b\"]},"
          "{\"name\":\"n\",\"type\":\"number\",\"min\":1,\"max\":10},"
          "{\"name\":\"k\",\"type\":\"set\",\"of\":\"enum\",\"values\":[\"x\",\"y\"]}]}]}",
            "field s.n narrows its range" },
        { "{\"schema\":\"t\",\"version\":2,\"scopes\":[{\"name\":\"s\",\"fields\":["
          "{\"name\":\"t\",\"type\":\"text\",\"max\":20},"
          "{\"name\":\"e\",\"type\":\"enum\",\"values\":[\"a\",\"b\"]},"
          "{\"name\":\"n\",\"type\":\"number\",\"min\":0,\"max\":10},"
          "{\"name\":\"k\",\"type\":\"set\",\"of\":\"text\"}]}]}",
            "field s.k changes its type" },
        { "{\"schema\":\"t\",\"version\":2,\"scopes\":[{\"name\":\"s\",\"fields\":["
          "{\"name\":\"t\",\"type\":\"date\"},"
          "{\"name\":\"e\",\"type\":\"enum\",\"values\":[\"a\",\"b\"]},"
          "{\"name\":\"n\",\"type\":\"number\",\"min\":0,\"max\":10},"
          "{\"name\":\"k\",\"type\":\"set\",\"of\":\"enum\",\"values\":[\"x\",\"y\"]}]}]}",
            "field s.t changes its type" },
        { "{\"schema\":\"t\",\"version\":2,\"scopes\":[{\"name\":\"s\",\"fields\":["
          "{\"name\":\"t\",\"type\":\"text\",\"max\":20},"
          "{\"name\":\"e\",\"type\":\"enum\",\"values\":[\"a\",\"b\"]},"
          "{\"name\":\"n\",\"type\":\"number\",\"min\":0,\"max\":10},"
          "{\"name\":\"k\",\"type\":\"set\",\"of\":\"enum\",\"values\":[\"y\"]}]}]}",
            "field s.k drops the value x" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        node_schema *s = parse(cases[i].json);
        node_errmsg msg = { { 0 } };
        node_err err = node_schema_grows(old, s, &msg);
        if (cases[i].want == NULL && err != NODE_OK)
            fail_msg("case %zu should grow the schema: %s", i, msg.text);
        if (cases[i].want != NULL
            && (err != NODE_EINVAL || strstr(msg.text, cases[i].want) == NULL))
            fail_msg("case %zu: want \"%s\", got %d \"%s\"", i, cases[i].want, err, msg.text);
        node_schema_free(s);
    }
    /* and a schema always grows itself */
    node_errmsg msg = { { 0 } };
    assert_int_equal(node_schema_grows(old, old, &msg), NODE_OK);
    node_schema_free(old);
}

/* The semantic checks of default.json (SCHEMA.md, "Checks"), for local writes only. */
static void local_checks(void **state)
{
    const node_schema *s = *state;
    const node_scope_def *ana = node_schema_scope(s, "anagrafica");
    const node_scope_def *con = node_schema_scope(s, "contatti");
    const node_field *cf = node_schema_field(s, "anagrafica", "codice_fiscale");
    const node_field *born = node_schema_field(s, "anagrafica", "data_nascita");
    const node_field *mail = node_schema_field(s, "contatti", "email");
    assert_int_equal(cf->check, NODE_CHECK_CODICE_FISCALE);
    assert_int_equal(born->check, NODE_CHECK_NOT_FUTURE);
    assert_int_equal(mail->check, NODE_CHECK_EMAIL);
    uint64_t now = UINT64_C(1796601600000); /* 2026-12-07T00:00:00Z: 01:00 in Rome */
    node_errmsg msg = { { 0 } };
    static const char *const good_cf[] = { "RSSMRA85T10A562S", "NNZJSL90A01Z131I",
        "BNCLRA92D45H501A", "12345678903", "98765432103" };
    for (size_t i = 0; i < sizeof(good_cf) / sizeof(good_cf[0]); i++)
        if (node_schema_check_local(ana, cf, good_cf[i], now, &msg) != NODE_OK)
            fail_msg("%s refused: %s", good_cf[i], msg.text);
    static const struct {
        const char *v, *says;
    } bad_cf[] = {
        { "RSSMRA85T10A562X", "its check character should be S, not X" },
        { "12345678901", "its last digit should be 3, not 1" },
        { "rssmra85t10a562s", "write the 16 characters in capitals" },
        { "RSSMRA85Z10A562S", "is not a codice fiscale" }, /* Z is no month */
        { "RSSMRA85T10A56", "is not a codice fiscale" },
        { "1234567890", "is not a codice fiscale" },
    };
    for (size_t i = 0; i < sizeof(bad_cf) / sizeof(bad_cf[0]); i++) {
        msg.text[0] = 0;
        assert_int_equal(node_schema_check_local(ana, cf, bad_cf[i].v, now, &msg), NODE_EINVAL);
        if (strstr(msg.text, bad_cf[i].says) == NULL
            || strncmp(msg.text, "anagrafica.codice_fiscale ", 26) != 0)
            fail_msg("%s: '%s' does not say '%s'", bad_cf[i].v, msg.text, bad_cf[i].says);
    }
    static const char *const good_mail[]
        = { "amina.traore@example.it", "a+b@posta.comune.example.org", "x_y@e-mail.eu" };
    for (size_t i = 0; i < sizeof(good_mail) / sizeof(good_mail[0]); i++)
        if (node_schema_check_local(con, mail, good_mail[i], now, &msg) != NODE_OK)
            fail_msg("%s refused: %s", good_mail[i], msg.text);
    static const char *const bad_mail[] = { "amina", "amina@", "@example.it", "a@b", "a@@b.it",
        "a..b@example.it", "a@example.i", "a@-x.it", "a b@example.it", "a@example.123" };
    for (size_t i = 0; i < sizeof(bad_mail) / sizeof(bad_mail[0]); i++) {
        assert_int_equal(node_schema_check_local(con, mail, bad_mail[i], now, &msg), NODE_EINVAL);
        assert_non_null(strstr(msg.text, "is not an e-mail address"));
    }
    /* today in Rome is 2026-12-07, also while it is still the 6th in UTC */
    assert_int_equal(node_schema_check_local(ana, born, "2026-12-07", now, &msg), NODE_OK);
    assert_int_equal(
        node_schema_check_local(ana, born, "2026-12-07", now - 30 * 60 * 1000, &msg), NODE_OK);
    assert_int_equal(
        node_schema_check_local(ana, born, "2026-12-07", now - 90 * 60 * 1000, &msg), NODE_EINVAL);
    assert_int_equal(node_schema_check_local(ana, born, "2026-12-08", now, &msg), NODE_EINVAL);
    assert_non_null(strstr(msg.text, "cannot be in the future"));
    assert_int_equal(node_schema_check_local(ana, born, "1990-01-01", now, &msg), NODE_OK);
    /* The type check that judges received deltas (node_schema_check) does not carry them: a
     * peer's delta is accepted or refused on signed data and types alone. */
    char out[64];
    assert_int_equal(
        node_schema_check(ana, cf, NODE_EDIT_SET, "RSSMRA85T10A562X", out, sizeof out, NULL, &msg),
        NODE_OK);
    assert_int_equal(
        node_schema_check(ana, born, NODE_EDIT_SET, "2199-01-01", out, sizeof out, NULL, &msg),
        NODE_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(
            default_schema_has_the_design_scopes, load_default, free_schema),
        cmocka_unit_test_setup_teardown(edits_are_checked, load_default, free_schema),
        cmocka_unit_test_setup_teardown(local_checks, load_default, free_schema),
        cmocka_unit_test(bad_schemas_name_the_place),
        cmocka_unit_test(schema_only_grows),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
