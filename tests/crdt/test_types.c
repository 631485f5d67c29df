/* crdt.types: each CRDT of a scope through the public API (SPEC.md model and I5-I9). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "crdt/crdt.h"
#include "crdt_testutil.h"

#define OK(call) assert_int_equal((call), CRDT_OK)

static crdt_scope *mk(void)
{
    crdt_scope *s = NULL;
    OK(crdt_scope_new(NULL, &s));
    assert_non_null(s);
    assert_true(crdt_scope_empty(s));
    return s;
}

static crdt_scope *clone_of(const crdt_scope *s)
{
    crdt_scope *c = NULL;
    OK(crdt_scope_clone(s, &c));
    assert_true(crdt_scope_equal(s, c));
    return c;
}

static void join_ok(crdt_scope *dst, const crdt_scope *src)
{
    OK(crdt_scope_join(dst, src));
}

static void assert_equal_scopes(const crdt_scope *a, const crdt_scope *b)
{
    if (!crdt_scope_equal(a, b)) {
        tu_scope_dump(stderr, "a", a);
        tu_scope_dump(stderr, "b", b);
        fail_msg("scopes differ");
    }
}

static void assert_invariants(const crdt_scope *s)
{
    char why[200];
    if (!tu_scope_invariants(s, why, sizeof(why))) {
        tu_scope_dump(stderr, "scope", s);
        fail_msg("invariant broken: %s", why);
    }
}

/* A delta mutator's delta, joined into the state before the change, gives the state after. */
static void assert_delta_law(
    const crdt_scope *before, const crdt_scope *delta, const crdt_scope *after)
{
    crdt_scope *x = clone_of(before);
    join_ok(x, delta);
    assert_equal_scopes(x, after);
    crdt_scope_free(x);
    assert_invariants(after);
    assert_invariants(delta);
}

static crdt_scope *reg_set(
    crdt_scope *s, uint8_t self, uint64_t wall, uint16_t logical, const char *field, const char *v)
{
    crdt_origin o = tu_origin(self);
    crdt_hlc h = tu_hlc(wall, logical);
    crdt_scope *before = clone_of(s);
    crdt_scope *d = mk();
    OK(crdt_register_set(s, d, &o, &h, field, v, strlen(v)));
    assert_int_equal(crdt_scope_entry_count(d), 1); /* small: the one new entry */
    assert_delta_law(before, d, s);
    crdt_scope_free(before);
    return d;
}

static crdt_scope *set_add(crdt_scope *s, uint8_t self, const char *field, const char *elem)
{
    crdt_origin o = tu_origin(self);
    crdt_scope *before = clone_of(s);
    crdt_scope *d = mk();
    OK(crdt_set_add(s, d, &o, field, elem, strlen(elem)));
    assert_int_equal(crdt_scope_entry_count(d), 1);
    assert_delta_law(before, d, s);
    crdt_scope_free(before);
    return d;
}

static crdt_scope *set_remove(crdt_scope *s, const char *field, const char *elem)
{
    crdt_scope *before = clone_of(s);
    crdt_scope *d = mk();
    OK(crdt_set_remove(s, d, field, elem, strlen(elem)));
    assert_int_equal(crdt_scope_entry_count(d), 0);
    assert_false(crdt_set_contains(s, field, elem, strlen(elem)));
    assert_delta_law(before, d, s);
    crdt_scope_free(before);
    return d;
}

static crdt_scope *counter_add(crdt_scope *s, uint8_t self, const char *field, int64_t amount)
{
    crdt_origin o = tu_origin(self);
    crdt_scope *before = clone_of(s);
    crdt_scope *d = mk();
    OK(tu_counter_add(s, d, &o, field, amount));
    assert_int_equal(crdt_scope_entry_count(d), 1);
    assert_delta_law(before, d, s);
    crdt_scope_free(before);
    return d;
}

static crdt_scope *tl_add(crdt_scope *s, uint8_t self, uint64_t wall, const char *field,
    const char *content, crdt_dot *id)
{
    crdt_origin o = tu_origin(self);
    crdt_hlc h = tu_hlc(wall, 0);
    crdt_scope *before = clone_of(s);
    crdt_scope *d = mk();
    OK(crdt_timeline_add(s, d, &o, &h, field, content, strlen(content), id));
    assert_int_equal(crdt_scope_entry_count(d), 1);
    assert_delta_law(before, d, s);
    crdt_scope_free(before);
    return d;
}

static crdt_scope *tl_redact(crdt_scope *s, const char *field, const crdt_dot *id)
{
    crdt_scope *before = clone_of(s);
    crdt_scope *d = mk();
    OK(crdt_timeline_redact(s, d, field, id));
    assert_int_equal(crdt_scope_entry_count(d), 1);
    assert_delta_law(before, d, s);
    crdt_scope_free(before);
    return d;
}

static crdt_scope *field_remove(crdt_scope *s, const char *field)
{
    crdt_scope *before = clone_of(s);
    crdt_scope *d = mk();
    OK(crdt_field_remove(s, d, field));
    assert_int_equal(crdt_scope_entry_count(d), 0);
    crdt_type t;
    assert_int_equal(crdt_scope_field_type(s, field, &t), CRDT_ENOTFOUND);
    assert_delta_law(before, d, s);
    crdt_scope_free(before);
    return d;
}

static void assert_reg(
    const crdt_scope *s, const char *field, size_t i, const char *v, uint64_t wall, uint8_t origin)
{
    crdt_reg_value rv;
    OK(crdt_register_at(s, field, i, &rv));
    if (!tu_bytes_eq(rv.value, v, strlen(v)))
        fail_msg("register %s[%zu]: want \"%s\", have %.*s", field, i, v, (int)rv.value.len,
            (const char *)rv.value.p);
    assert_int_equal(rv.hlc.wall, wall);
    assert_int_equal(rv.dot.origin.b[CRDT_ORIGIN_LEN - 1], origin);
}

static size_t reg_count(const crdt_scope *s, const char *field)
{
    size_t n = 0;
    OK(crdt_register_count(s, field, &n));
    return n;
}

static int64_t counter_value(const crdt_scope *s, const char *field)
{
    int64_t v = 0;
    OK(crdt_counter_value(s, field, &v));
    return v;
}

static void free_all(crdt_scope **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        crdt_scope_free(v[i]);
}

/* ---------------------------------------------------------------------------------------- */

static void test_register_sequential(void **state)
{
    (void)state;
    crdt_scope *s = mk();
    crdt_scope *d1 = reg_set(s, 1, 100, 0, "name", "Amina");
    assert_int_equal(reg_count(s, "name"), 1);
    assert_reg(s, "name", 0, "Amina", 100, 1);
    crdt_reg_value rv;
    OK(crdt_register_at(s, "name", 0, &rv));
    assert_int_equal(rv.dot.counter, 1);
    crdt_scope *d2 = reg_set(s, 1, 90, 0, "name", "Aminata"); /* seen: replaces, any HLC */
    assert_int_equal(reg_count(s, "name"), 1);
    assert_reg(s, "name", 0, "Aminata", 90, 1);
    OK(crdt_register_at(s, "name", 0, &rv));
    assert_int_equal(rv.dot.counter, 2);
    /* The second delta observed the first write: old delta re-delivered changes nothing. */
    crdt_scope *c = clone_of(s);
    join_ok(c, d1);
    assert_equal_scopes(c, s);
    /* Empty value is a value. */
    crdt_scope *d3 = reg_set(s, 1, 95, 0, "name", "");
    assert_reg(s, "name", 0, "", 95, 1);
    crdt_type t;
    OK(crdt_scope_field_type(s, "name", &t));
    assert_int_equal(t, CRDT_REGISTER);
    crdt_scope *all[] = { s, d1, d2, c, d3 };
    free_all(all, 5);
}

static void test_register_concurrent_siblings(void **state)
{
    (void)state;
    crdt_scope *a = mk(), *b = mk();
    crdt_scope *da = reg_set(a, 1, 100, 0, "city", "Latina");
    crdt_scope *db = reg_set(b, 2, 200, 0, "city", "Roma");
    join_ok(a, db);
    join_ok(b, da);
    assert_equal_scopes(a, b);
    for (int k = 0; k < 2; k++) {
        crdt_scope *s = k ? b : a;
        assert_int_equal(reg_count(s, "city"), 2);
        assert_reg(s, "city", 0, "Roma", 200, 2); /* highest HLC wins */
        assert_reg(s, "city", 1, "Latina", 100, 1);
        crdt_reg_value rv;
        assert_int_not_equal(crdt_register_at(s, "city", 2, &rv), CRDT_OK);
    }
    /* Equal HLCs: the higher origin wins (origins differ in their last byte only). */
    crdt_scope *a2 = mk(), *b2 = mk();
    crdt_scope *da2 = reg_set(a2, 9, 500, 3, "x", "nine");
    crdt_scope *db2 = reg_set(b2, 7, 500, 3, "x", "seven");
    join_ok(a2, db2);
    join_ok(b2, da2);
    assert_equal_scopes(a2, b2);
    assert_reg(a2, "x", 0, "nine", 500, 9);
    assert_reg(a2, "x", 1, "seven", 500, 7);
    /* HLC beats origin: a higher logical part wins over a higher origin. */
    crdt_scope *c2 = mk();
    crdt_scope *dc2 = reg_set(c2, 3, 500, 4, "x", "three");
    join_ok(a2, dc2);
    assert_int_equal(reg_count(a2, "x"), 3);
    assert_reg(a2, "x", 0, "three", 500, 3);
    assert_reg(a2, "x", 1, "nine", 500, 9);
    assert_reg(a2, "x", 2, "seven", 500, 7);

    /* A later write that has seen both siblings leaves one value, even with a lower HLC. */
    crdt_scope *dw = reg_set(a, 1, 50, 0, "city", "Aprilia");
    assert_int_equal(reg_count(a, "city"), 1);
    join_ok(b, dw);
    assert_equal_scopes(a, b);
    assert_int_equal(reg_count(b, "city"), 1);
    assert_reg(b, "city", 0, "Aprilia", 50, 1);
    /* Old deltas re-delivered do not bring the siblings back. */
    join_ok(b, da);
    join_ok(b, db);
    join_ok(a, db);
    assert_equal_scopes(a, b);
    assert_int_equal(reg_count(b, "city"), 1);

    crdt_scope *all[] = { a, b, da, db, a2, b2, da2, db2, c2, dc2, dw };
    free_all(all, 11);
}

static void test_set(void **state)
{
    (void)state;
    crdt_scope *s = mk();
    crdt_scope *d[8];
    d[0] = set_add(s, 1, "lang", "it");
    d[1] = set_add(s, 1, "lang", "ar");
    d[2] = set_add(s, 1, "lang", "fr");
    d[3] = set_add(s, 1, "lang", "ar"); /* again: still one member, one entry */
    size_t n;
    OK(crdt_set_count(s, "lang", &n));
    assert_int_equal(n, 3);
    assert_int_equal(crdt_scope_entry_count(s), 3);
    const char *want[] = { "ar", "fr", "it" }; /* ascending bytes */
    for (size_t i = 0; i < 3; i++) {
        crdt_bytes b;
        OK(crdt_set_at(s, "lang", i, &b));
        assert_true(tu_bytes_eq(b, want[i], 2));
    }
    crdt_bytes b;
    assert_int_not_equal(crdt_set_at(s, "lang", 3, &b), CRDT_OK);
    assert_true(crdt_set_contains(s, "lang", "fr", 2));
    assert_false(crdt_set_contains(s, "lang", "f", 1));
    assert_false(crdt_set_contains(s, "other", "fr", 2));

    d[4] = set_remove(s, "lang", "fr");
    OK(crdt_set_count(s, "lang", &n));
    assert_int_equal(n, 2);
    assert_int_equal(crdt_set_remove(s, NULL, "lang", "fr", 2), CRDT_ENOTFOUND);
    /* Re-add after remove. */
    d[5] = set_add(s, 1, "lang", "fr");
    assert_true(crdt_set_contains(s, "lang", "fr", 2));
    /* Old deltas re-delivered in any order: the remove observed only the first add of fr. */
    crdt_scope *f = mk();
    for (int i = 5; i >= 0; i--)
        join_ok(f, d[i]);
    assert_equal_scopes(f, s);
    /* Remove every member: the field holds nothing. */
    d[6] = set_remove(s, "lang", "ar");
    d[7] = set_remove(s, "lang", "it");
    crdt_scope *g = set_remove(s, "lang", "fr");
    assert_int_equal(crdt_set_count(s, "lang", &n), CRDT_ENOTFOUND);
    assert_int_equal(crdt_scope_entry_count(s), 0);
    assert_false(crdt_scope_empty(s)); /* the context remembers */
    /* The empty byte string is an element like any other. */
    crdt_scope *h = set_add(s, 2, "lang", "");
    assert_true(crdt_set_contains(s, "lang", "", 0));
    assert_true(crdt_set_contains(s, "lang", NULL, 0));
    OK(crdt_set_count(s, "lang", &n));
    assert_int_equal(n, 1);
    free_all(d, 8);
    crdt_scope *all[] = { s, f, g, h };
    free_all(all, 4);
}

static void test_set_add_wins(void **state)
{
    (void)state;
    crdt_scope *a = mk(), *b = mk();
    crdt_scope *d0 = set_add(a, 1, "skills", "welding");
    crdt_scope *d1 = set_add(a, 1, "skills", "cooking");
    join_ok(b, a);
    /* A removes welding; B concurrently adds it again. */
    crdt_scope *rm = set_remove(a, "skills", "welding");
    crdt_scope *ad = set_add(b, 2, "skills", "welding");
    /* And A removes cooking with no concurrent add: it stays removed. */
    crdt_scope *rm2 = set_remove(a, "skills", "cooking");
    join_ok(a, ad);
    join_ok(b, rm);
    join_ok(b, rm2);
    assert_equal_scopes(a, b);
    assert_true(crdt_set_contains(a, "skills", "welding", 7));
    assert_false(crdt_set_contains(a, "skills", "cooking", 7));
    /* The surviving add is B's: A's observed add is gone. */
    assert_int_equal(crdt_scope_entry_count(a), 1);
    crdt_entry e;
    OK(crdt_scope_entry_at(a, 0, &e));
    assert_int_equal(e.dot.origin.b[CRDT_ORIGIN_LEN - 1], 2);
    /* Re-delivery of the first adds does not resurrect anything. */
    join_ok(a, d0);
    join_ok(a, d1);
    assert_equal_scopes(a, b);
    crdt_scope *all[] = { a, b, d0, d1, rm, ad, rm2 };
    free_all(all, 7);
}

static void test_counter(void **state)
{
    (void)state;
    crdt_scope *a = mk(), *b = mk();
    crdt_scope *d[6];
    d[0] = counter_add(a, 1, "hours", 5);
    d[1] = counter_add(a, 1, "hours", 3);
    d[2] = counter_add(b, 2, "hours", -2);
    d[3] = counter_add(b, 2, "hours", 10);
    assert_int_equal(counter_value(a, "hours"), 8);
    assert_int_equal(counter_value(b, "hours"), 8);
    assert_int_equal(crdt_scope_entry_count(a), 1); /* one live entry per origin (I8) */
    crdt_entry e;
    OK(crdt_scope_entry_at(b, 0, &e));
    assert_int_equal(e.pos, 10);
    assert_int_equal(e.neg, 2);
    /* Its dot is the second of node 2's counter origin for "hours", not of node 2. */
    crdt_origin o2 = tu_origin(2), co2 = tu_counter_origin(&o2, "hours");
    assert_memory_not_equal(co2.b, o2.b, CRDT_ORIGIN_LEN);
    assert_memory_equal(e.dot.origin.b, co2.b, CRDT_ORIGIN_LEN);
    assert_int_equal(e.dot.counter, 2);
    /* The second delta alone supersedes the first entry wherever it arrives (I8). */
    crdt_scope *late = mk();
    join_ok(late, d[3]);
    join_ok(late, d[2]);
    assert_int_equal(counter_value(late, "hours"), 8);
    assert_int_equal(crdt_scope_entry_count(late), 1);
    crdt_scope_free(late);
    join_ok(a, b);
    join_ok(b, a);
    assert_equal_scopes(a, b);
    assert_int_equal(counter_value(a, "hours"), 16);
    assert_int_equal(crdt_scope_entry_count(a), 2);
    d[4] = counter_add(a, 1, "hours", -100);
    assert_int_equal(counter_value(a, "hours"), -84);
    d[5] = counter_add(b, 3, "hours", 4); /* a third origin at B */
    /* Deltas in reverse order with duplicates reach the same state. */
    crdt_scope *f = mk();
    for (int i = 5; i >= 0; i--) {
        join_ok(f, d[i]);
        join_ok(f, d[5 - i]);
    }
    join_ok(a, b);
    assert_equal_scopes(f, a);
    assert_int_equal(counter_value(f, "hours"), -80);
    assert_int_equal(crdt_scope_entry_count(f), 3);
    free_all(d, 6);
    crdt_scope *all[] = { a, b, f };
    free_all(all, 3);
}

static void assert_event(const crdt_scope *s, size_t i, const crdt_dot *id, uint64_t wall,
    const char *content, bool redacted)
{
    crdt_event ev;
    OK(crdt_timeline_at(s, "log", i, &ev));
    assert_int_equal(crdt_dot_cmp(&ev.id, id), 0);
    assert_int_equal(ev.hlc.wall, wall);
    assert_int_equal(ev.redacted, redacted);
    if (redacted)
        assert_int_equal(ev.content.len, 0);
    else
        assert_true(tu_bytes_eq(ev.content, content, strlen(content)));
}

static void test_timeline(void **state)
{
    (void)state;
    crdt_scope *a = mk(), *b = mk();
    crdt_dot e1, e2, e3, e4;
    crdt_scope *d1 = tl_add(a, 1, 300, "log", "colloquio", &e1);
    crdt_scope *d2 = tl_add(a, 1, 100, "log", "iscrizione", &e2);
    crdt_scope *d3 = tl_add(b, 2, 100, "log", "corso A2", &e3);
    crdt_scope *d4 = tl_add(b, 2, 100, "log", "corso B1", &e4);
    crdt_dot x1 = tu_dot(1, 1), x2 = tu_dot(1, 2), x3 = tu_dot(2, 1), x4 = tu_dot(2, 2);
    assert_int_equal(crdt_dot_cmp(&e1, &x1), 0);
    assert_int_equal(crdt_dot_cmp(&e2, &x2), 0);
    assert_int_equal(crdt_dot_cmp(&e3, &x3), 0);
    assert_int_equal(crdt_dot_cmp(&e4, &x4), 0);
    join_ok(a, b);
    join_ok(b, a);
    assert_equal_scopes(a, b);
    size_t n;
    OK(crdt_timeline_count(a, "log", &n));
    assert_int_equal(n, 4);
    /* (HLC, origin, counter): 100/A/2, 100/B/1, 100/B/2, 300/A/1. */
    assert_event(a, 0, &e2, 100, "iscrizione", false);
    assert_event(a, 1, &e3, 100, "corso A2", false);
    assert_event(a, 2, &e4, 100, "corso B1", false);
    assert_event(a, 3, &e1, 300, "colloquio", false);
    crdt_event ev;
    assert_int_not_equal(crdt_timeline_at(a, "log", 4, &ev), CRDT_OK);

    /* B redacts A's event: id and HLC stay, content goes. */
    crdt_scope *dr = tl_redact(b, "log", &e1);
    assert_event(b, 3, &e1, 300, "", true);
    OK(crdt_timeline_count(b, "log", &n));
    assert_int_equal(n, 4);
    join_ok(a, dr);
    assert_equal_scopes(a, b);
    /* Re-delivering the original add does not bring the content back. */
    join_ok(a, d1);
    assert_event(a, 3, &e1, 300, "", true);
    assert_equal_scopes(a, b);
    /* Redaction first, then the add, or the other way: the same redacted event (I9). */
    crdt_scope *f1 = mk(), *f2 = mk();
    join_ok(f1, dr);
    assert_event(f1, 0, &e1, 300, "", true);
    join_ok(f1, d1);
    join_ok(f2, d1);
    join_ok(f2, dr);
    assert_equal_scopes(f1, f2);
    assert_event(f1, 0, &e1, 300, "", true);
    /* Redacting an unknown event. */
    crdt_dot none = tu_dot(5, 1);
    assert_int_equal(crdt_timeline_redact(a, NULL, "log", &none), CRDT_ENOTFOUND);
    assert_int_equal(crdt_timeline_redact(a, NULL, "nolog", &e1), CRDT_ENOTFOUND);
    crdt_scope *all[] = { a, b, d1, d2, d3, d4, dr, f1, f2 };
    free_all(all, 9);
}

static void test_field_remove_register(void **state)
{
    (void)state;
    crdt_scope *a = mk(), *b = mk();
    crdt_scope *dx = reg_set(a, 1, 100, 0, "addr", "via Roma 1");
    join_ok(b, dx);
    /* B removes the field it has seen; A concurrently writes over its own value. */
    crdt_scope *rm = field_remove(b, "addr");
    crdt_scope *dy = reg_set(a, 1, 110, 0, "addr", "via Milano 2");
    join_ok(a, rm);
    join_ok(b, dy);
    assert_equal_scopes(a, b);
    assert_int_equal(reg_count(a, "addr"), 1);
    assert_reg(a, "addr", 0, "via Milano 2", 110, 1);
    /* The removed value does not come back when its delta arrives again. */
    join_ok(a, dx);
    join_ok(b, dx);
    assert_equal_scopes(a, b);
    assert_int_equal(reg_count(a, "addr"), 1);
    /* Concurrent write by a third replica that never saw the field: survives the remove. */
    crdt_scope *c = mk();
    crdt_scope *dz = reg_set(c, 3, 90, 0, "addr", "via Po 3");
    crdt_scope *rm2 = field_remove(a, "addr");
    join_ok(a, dz);
    join_ok(c, rm2);
    join_ok(c, a);
    assert_int_equal(reg_count(a, "addr"), 1);
    assert_reg(a, "addr", 0, "via Po 3", 90, 3);
    /* A field that holds nothing cannot be removed. */
    crdt_scope *e = mk();
    assert_int_equal(crdt_field_remove(e, NULL, "addr"), CRDT_ENOTFOUND);
    assert_true(crdt_scope_empty(e));
    crdt_scope *all[] = { a, b, c, dx, rm, dy, dz, rm2, e };
    free_all(all, 9);
}

static void test_field_remove_other_types(void **state)
{
    (void)state;
    crdt_scope *a = mk(), *b = mk();
    crdt_scope *d[12];
    size_t k = 0;
    d[k++] = set_add(a, 1, "s", "p");
    d[k++] = set_add(a, 1, "s", "q");
    d[k++] = counter_add(a, 1, "c", 5);
    crdt_dot ev;
    d[k++] = tl_add(a, 1, 10, "t", "event", &ev);
    join_ok(b, a);
    /* B removes the three fields; A concurrently adds to each. */
    d[k++] = field_remove(b, "s");
    d[k++] = field_remove(b, "c");
    d[k++] = field_remove(b, "t");
    d[k++] = set_add(a, 1, "s", "r");
    d[k++] = counter_add(a, 1, "c", 1);
    crdt_dot ev2;
    d[k++] = tl_add(a, 1, 20, "t", "event 2", &ev2);
    join_ok(a, b);
    join_ok(b, a);
    assert_equal_scopes(a, b);
    /* Set: only the concurrent add survives. */
    size_t n;
    OK(crdt_set_count(a, "s", &n));
    assert_int_equal(n, 1);
    assert_true(crdt_set_contains(a, "s", "r", 1));
    /* Counter: the origin's whole total survives its concurrent increment (SPEC.md I8). */
    assert_int_equal(counter_value(a, "c"), 6);
    /* Timeline: the observed event is gone, the concurrent one stays. */
    OK(crdt_timeline_count(a, "t", &n));
    assert_int_equal(n, 1);
    crdt_event e;
    OK(crdt_timeline_at(a, "t", 0, &e));
    assert_int_equal(crdt_dot_cmp(&e.id, &ev2), 0);
    /* Every delta again, in reverse: nothing observed comes back. */
    for (size_t i = k; i > 0; i--)
        join_ok(a, d[i - 1]);
    assert_equal_scopes(a, b);
    /* A reset counter with no concurrent increment reads as absent, then counts from 0. */
    crdt_scope *r = field_remove(a, "c");
    assert_int_equal(crdt_counter_value(a, "c", &(int64_t) { 0 }), CRDT_ENOTFOUND);
    crdt_scope *r2 = counter_add(a, 2, "c", 7);
    assert_int_equal(counter_value(a, "c"), 7);
    free_all(d, k);
    crdt_scope *all[] = { a, b, r, r2 };
    free_all(all, 4);
}

static void test_type_mismatch(void **state)
{
    (void)state;
    crdt_scope *s = mk();
    crdt_origin o = tu_origin(1);
    crdt_hlc h = tu_hlc(1, 0);
    OK(crdt_register_set(s, NULL, &o, &h, "f", "v", 1));
    OK(crdt_set_add(s, NULL, &o, "g", "e", 1));
    crdt_scope *before = clone_of(s);
    crdt_scope *d = mk();
    crdt_dot id = tu_dot(1, 1);
    assert_int_equal(crdt_set_add(s, d, &o, "f", "e", 1), CRDT_ETYPE);
    assert_int_equal(crdt_set_remove(s, d, "f", "v", 1), CRDT_ETYPE);
    assert_int_equal(tu_counter_add(s, d, &o, "f", 1), CRDT_ETYPE);
    assert_int_equal(crdt_timeline_add(s, d, &o, &h, "f", "x", 1, NULL), CRDT_ETYPE);
    assert_int_equal(crdt_timeline_redact(s, d, "f", &id), CRDT_ETYPE);
    assert_int_equal(crdt_register_set(s, d, &o, &h, "g", "v", 1), CRDT_ETYPE);
    assert_equal_scopes(s, before);
    assert_true(crdt_scope_empty(d));
    size_t n;
    int64_t v;
    crdt_reg_value rv;
    crdt_bytes b;
    crdt_event ev;
    assert_int_equal(crdt_set_count(s, "f", &n), CRDT_ETYPE);
    assert_int_equal(crdt_set_at(s, "f", 0, &b), CRDT_ETYPE);
    assert_int_equal(crdt_counter_value(s, "f", &v), CRDT_ETYPE);
    assert_int_equal(crdt_timeline_count(s, "f", &n), CRDT_ETYPE);
    assert_int_equal(crdt_timeline_at(s, "f", 0, &ev), CRDT_ETYPE);
    assert_int_equal(crdt_register_count(s, "g", &n), CRDT_ETYPE);
    assert_int_equal(crdt_register_at(s, "g", 0, &rv), CRDT_ETYPE);
    assert_false(crdt_set_contains(s, "f", "v", 1));

    /* A join where the two sides hold one field with different types changes nothing. */
    crdt_scope *other = mk();
    crdt_origin p = tu_origin(2);
    OK(tu_counter_add(other, NULL, &p, "f", 3));
    OK(crdt_register_set(other, NULL, &p, &h, "a", "first", 5)); /* a field that would merge */
    assert_int_equal(crdt_scope_join(s, other), CRDT_ETYPE);
    assert_equal_scopes(s, before);
    crdt_scope *other2 = clone_of(other);
    assert_int_equal(crdt_scope_join(other, s), CRDT_ETYPE);
    assert_equal_scopes(other, other2);
    crdt_scope *all[] = { s, before, d, other, other2 };
    free_all(all, 5);
}

/* A scope with every type, several origins, a removal and a redaction. */
static crdt_scope *sample_scope(void)
{
    crdt_scope *a = mk(), *b = mk();
    crdt_origin o1 = tu_origin(1), o2 = tu_origin(2);
    crdt_hlc h = tu_hlc(1000, 0);
    crdt_dot ev;
    OK(crdt_register_set(a, NULL, &o1, &h, "nome", "Fatou", 5));
    OK(crdt_register_set(b, NULL, &o2, &h, "nome", "Fatu", 4));
    OK(crdt_set_add(a, NULL, &o1, "lingue", "wo", 2));
    OK(crdt_set_add(b, NULL, &o2, "lingue", "fr", 2));
    OK(crdt_set_add(b, NULL, &o2, "lingue", "it", 2));
    OK(crdt_set_add(a, NULL, &o1, "lingue", "fr", 2));
    OK(tu_counter_add(a, NULL, &o1, "ore", 12));
    OK(tu_counter_add(b, NULL, &o2, "ore", -2));
    OK(crdt_timeline_add(a, NULL, &o1, &h, "diario", "primo", 5, &ev));
    OK(crdt_timeline_add(b, NULL, &o2, &h, "diario", "secondo", 7, NULL));
    OK(crdt_timeline_redact(a, NULL, "diario", &ev));
    OK(crdt_register_set(a, NULL, &o1, &h, "n", "short name first", 16));
    OK(crdt_register_set(a, NULL, &o1, &h, "tmp", "x", 1));
    OK(crdt_field_remove(a, NULL, "tmp"));
    OK(crdt_scope_join(a, b));
    crdt_scope_free(b);
    return a;
}

static void test_entries_and_rebuild(void **state)
{
    (void)state;
    crdt_scope *s = sample_scope();
    assert_invariants(s);
    size_t n = crdt_scope_entry_count(s);
    assert_int_equal(n, 11); /* fr was added at both: two entries */
    crdt_stats st;
    crdt_scope_stats(s, &st);
    assert_int_equal(st.entries, n);
    assert_int_equal(st.fields, 5);
    /* Two nodes, plus the dot sequence of each node's counter entries (SPEC.md I8). */
    assert_int_equal(st.vv_entries, 4);
    /* Fields in ascending byte order, a shorter name first on a common prefix. */
    const char *fields[] = { "diario", "lingue", "n", "nome", "ore" };
    crdt_type types[] = { CRDT_TIMELINE, CRDT_SET, CRDT_REGISTER, CRDT_REGISTER, CRDT_COUNTER };
    assert_int_equal(crdt_scope_field_count(s), 5);
    for (size_t i = 0; i < 5; i++) {
        const char *name;
        crdt_type t;
        OK(crdt_scope_field_at(s, i, &name, &t));
        assert_string_equal(name, fields[i]);
        assert_int_equal(t, types[i]);
        OK(crdt_scope_field_type(s, fields[i], &t));
        assert_int_equal(t, types[i]);
    }
    const char *name;
    assert_int_not_equal(crdt_scope_field_at(s, 5, &name, NULL), CRDT_OK);

    /* Entries strictly ascending in crdt_entry_cmp order; rebuilding gives an equal scope. */
    crdt_scope *r = mk();
    crdt_entry prev;
    for (size_t i = 0; i < n; i++) {
        crdt_entry e;
        OK(crdt_scope_entry_at(s, i, &e));
        if (i > 0) {
            assert_true(crdt_entry_cmp(&prev, &e) < 0);
            assert_true(crdt_entry_cmp(&e, &prev) > 0);
        }
        assert_int_equal(crdt_entry_cmp(&e, &e), 0);
        OK(crdt_scope_append(r, &e));
        prev = e;
    }
    crdt_entry e;
    assert_int_not_equal(crdt_scope_entry_at(s, n, &e), CRDT_OK);
    OK(crdt_scope_set_cc(r, crdt_scope_cc(s)));
    assert_equal_scopes(r, s);
    /* And the rebuilt scope reads the same. */
    assert_int_equal(reg_count(r, "nome"), 2);
    assert_reg(r, "nome", 0, "Fatu", 1000, 2);
    assert_int_equal(counter_value(r, "ore"), 10);
    crdt_event ev;
    OK(crdt_timeline_at(r, "diario", 0, &ev));
    assert_true(ev.redacted);
    crdt_scope_free(r);
    crdt_scope_free(s);
}

static void test_append_rejects(void **state)
{
    (void)state;
    crdt_scope *s = sample_scope();
    size_t n = crdt_scope_entry_count(s);
    crdt_entry e[16];
    for (size_t i = 0; i < n; i++)
        OK(crdt_scope_entry_at(s, i, &e[i]));

    crdt_scope *r = mk();
    OK(crdt_scope_append(r, &e[1]));
    assert_int_equal(crdt_scope_append(r, &e[0]), CRDT_EORDER); /* before the last */
    assert_int_equal(crdt_scope_append(r, &e[1]), CRDT_EORDER); /* the same key again */
    assert_int_equal(crdt_scope_entry_count(r), 1);
    /* A field that mixes types: same field as the last entry, greater key, other type. */
    crdt_entry mix = e[1];
    assert_int_equal(mix.type, CRDT_TIMELINE);
    mix.type = CRDT_REGISTER;
    mix.redacted = false;
    mix.dot.counter += 100;
    assert_int_equal(crdt_scope_append(r, &mix), CRDT_EORDER);
    assert_int_equal(crdt_scope_entry_count(r), 1);
    /* Payloads not valid for their type. */
    crdt_entry bad = e[2]; /* a set entry */
    assert_int_equal(bad.type, CRDT_SET);
    bad.value.p = (const uint8_t *)"v";
    bad.value.len = 1;
    assert_int_equal(crdt_scope_append(r, &bad), CRDT_EINVAL);
    bad = e[2];
    bad.type = (crdt_type)9;
    assert_int_equal(crdt_scope_append(r, &bad), CRDT_EINVAL);
    bad = e[n - 1]; /* a counter entry */
    assert_int_equal(bad.type, CRDT_COUNTER);
    bad.pos = (uint64_t)INT64_MAX + 1;
    assert_int_equal(crdt_scope_append(r, &bad), CRDT_EINVAL);
    bad = e[2];
    bad.dot.counter = 0;
    assert_int_equal(crdt_scope_append(r, &bad), CRDT_EINVAL);
    assert_int_equal(crdt_scope_entry_count(r), 1);
    char longname[CRDT_FIELD_MAX + 2];
    memset(longname, 'z', sizeof(longname));
    bad = e[2];
    bad.field.p = (const uint8_t *)longname;
    bad.field.len = CRDT_FIELD_MAX + 1;
    assert_int_equal(crdt_scope_append(r, &bad), CRDT_ELIMIT);
    for (size_t i = 2; i < n; i++)
        OK(crdt_scope_append(r, &e[i]));

    /* A context that does not cover an entry: refused, scope unchanged. */
    crdt_cc partial;
    crdt_cc_init(&partial, NULL);
    for (size_t i = 2; i < n; i++)
        OK(crdt_cc_add(&partial, &e[i].dot));
    crdt_scope *before = clone_of(r);
    assert_int_equal(crdt_scope_set_cc(r, &partial), CRDT_EORDER);
    assert_equal_scopes(r, before);
    OK(crdt_cc_add(&partial, &e[1].dot));
    OK(crdt_scope_set_cc(r, &partial));
    assert_invariants(r);
    assert_false(crdt_scope_equal(r, s)); /* e[0] missing */
    crdt_cc_fini(&partial);
    crdt_scope_free(before);
    crdt_scope_free(r);
    crdt_scope_free(s);
}

static void test_entry_cmp_order(void **state)
{
    (void)state;
    crdt_entry a, b;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    a.type = b.type = CRDT_SET;
    a.dot = b.dot = tu_dot(1, 1);
    a.field.p = (const uint8_t *)"ab";
    a.field.len = 2;
    b.field.p = (const uint8_t *)"abc";
    b.field.len = 3;
    assert_true(crdt_entry_cmp(&a, &b) < 0); /* shorter first on a common prefix */
    b.field.p = (const uint8_t *)"b";
    b.field.len = 1;
    assert_true(crdt_entry_cmp(&a, &b) < 0);
    b.field = a.field;
    a.elem.p = (const uint8_t *)"\xff";
    a.elem.len = 1;
    b.elem.p = (const uint8_t *)"\x01\x00";
    b.elem.len = 2;
    assert_true(crdt_entry_cmp(&a, &b) > 0); /* element bytes, unsigned */
    b.elem = a.elem;
    b.dot = tu_dot(1, 2);
    assert_true(crdt_entry_cmp(&a, &b) < 0); /* then the dot */
    b.dot = tu_dot(0, 9);
    assert_true(crdt_entry_cmp(&a, &b) > 0);
    b.dot = a.dot;
    b.value.p = (const uint8_t *)"x"; /* payload is not part of the key */
    b.value.len = 1;
    assert_int_equal(crdt_entry_cmp(&a, &b), 0);
}

/* The third argument of crdt_counter_add is the origin of the entry's dot (SPEC.md I8): the
 * entry carries exactly the origin given, numbered on its own; and why a node must not give its
 * own origin: the counter delta's range would remove the node's other writes. */
static void test_counter_origin_is_given(void **state)
{
    (void)state;
    crdt_scope *s = mk();
    crdt_origin o = tu_origin(7), co;
    memset(co.b, 0xc5, sizeof co.b);
    crdt_hlc h = tu_hlc(5, 0);
    OK(crdt_register_set(s, NULL, &o, &h, "nome", "Amina", 5));
    OK(crdt_counter_add(s, NULL, &co, "ore", 3));
    OK(crdt_counter_add(s, NULL, &co, "ore", 4));
    crdt_entry e;
    OK(crdt_scope_entry_at(s, 1, &e)); /* "nome" < "ore" */
    assert_int_equal(e.type, CRDT_COUNTER);
    assert_memory_equal(e.dot.origin.b, co.b, CRDT_ORIGIN_LEN);
    assert_int_equal(e.dot.counter, 2);
    assert_int_equal(e.pos, 7);
    assert_int_equal(crdt_cc_max(crdt_scope_cc(s), &o), 1); /* the register's dot only */
    assert_int_equal(counter_value(s, "ore"), 7);
    /* The writer's own origin as counter origin: the range (o, 1..2) covers the register. */
    OK(crdt_counter_add(s, NULL, &o, "ore2", 1));
    size_t n = 0;
    assert_int_equal(crdt_register_count(s, "nome", &n), CRDT_ENOTFOUND);
    crdt_scope_free(s);
}

static void test_clone_clear_and_delta_batch(void **state)
{
    (void)state;
    crdt_scope *s = mk();
    crdt_scope *d = mk();
    crdt_origin o = tu_origin(4);
    crdt_hlc h = tu_hlc(7, 0);
    /* Several edits gathered into one delta; counters run on one sequence per origin. */
    crdt_dot id;
    OK(crdt_register_set(s, d, &o, &h, "r", "v", 1));
    OK(crdt_set_add(s, d, &o, "s", "e", 1));
    OK(tu_counter_add(s, d, &o, "c", 2));
    OK(crdt_timeline_add(s, d, &o, &h, "t", "x", 1, &id));
    assert_int_equal(id.counter, 3); /* counter entries use their own dot sequence */
    OK(crdt_register_set(s, d, &o, &h, "r", "w", 1));
    OK(tu_counter_add(s, d, &o, "c", 3));
    OK(crdt_set_remove(s, d, "s", "e", 1));
    assert_int_equal(crdt_cc_max(crdt_scope_cc(s), &o), 4); /* a remove makes no dot */
    crdt_origin co = tu_counter_origin(&o, "c");
    assert_int_equal(crdt_cc_max(crdt_scope_cc(s), &co), 2);
    crdt_scope *f = mk();
    join_ok(f, d);
    assert_equal_scopes(f, s);
    /* A state received with higher dots of self: the next dot follows them. */
    crdt_scope *g = mk();
    join_ok(g, s);
    OK(crdt_timeline_add(g, NULL, &o, &h, "t", "y", 1, &id));
    assert_int_equal(id.counter, 5);

    crdt_scope *c = clone_of(s);
    OK(crdt_set_add(c, NULL, &o, "s", "z", 1));
    assert_false(crdt_scope_equal(c, s)); /* a deep copy */
    crdt_scope_clear(c);
    assert_true(crdt_scope_empty(c));
    assert_int_equal(crdt_scope_entry_count(c), 0);
    crdt_scope *e = mk();
    assert_equal_scopes(c, e);
    OK(crdt_set_add(c, NULL, &o, "s", "z", 1)); /* usable after clear */
    assert_int_equal(crdt_scope_entry_count(c), 1);
    crdt_scope *all[] = { s, d, f, g, c, e };
    free_all(all, 6);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_sequential),
        cmocka_unit_test(test_register_concurrent_siblings),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_set_add_wins),
        cmocka_unit_test(test_counter),
        cmocka_unit_test(test_counter_origin_is_given),
        cmocka_unit_test(test_timeline),
        cmocka_unit_test(test_field_remove_register),
        cmocka_unit_test(test_field_remove_other_types),
        cmocka_unit_test(test_type_mismatch),
        cmocka_unit_test(test_entries_and_rebuild),
        cmocka_unit_test(test_append_rejects),
        cmocka_unit_test(test_entry_cmp_order),
        cmocka_unit_test(test_clone_clear_and_delta_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
