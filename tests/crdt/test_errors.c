/* crdt.errors: every error path of the public API: NULL arguments, limits, not found,
 * overflow, conflicting replicas, and allocation failure injected at every allocation of a
 * mutator and of a join, which must leave the state and the delta exactly as they were
 * (SPEC.md I11). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "crdt/crdt.h"
#include "crdt_testutil.h"
#include "test_mem.h"

#define OK(call) assert_int_equal((call), CRDT_OK)

static crdt_scope *mk(const crdt_mem *mem)
{
    crdt_scope *s = NULL;
    OK(crdt_scope_new(mem, &s));
    return s;
}

static crdt_scope *clone_of(const crdt_scope *s)
{
    crdt_scope *c = NULL;
    OK(crdt_scope_clone(s, &c));
    return c;
}

static void assert_same(const crdt_scope *a, const crdt_scope *b)
{
    if (!crdt_scope_equal(a, b)) {
        tu_scope_dump(stderr, "expected", b);
        tu_scope_dump(stderr, "actual", a);
        fail_msg("scope changed");
    }
}

static crdt_dot g_ev_two, g_ev_three; /* events that fill() adds, not redacted */

/* A scope holding every type, with siblings, several origins and a redacted event. */
static void fill(crdt_scope *s)
{
    crdt_scope *b = mk(NULL);
    crdt_origin o1 = tu_origin(1), o2 = tu_origin(2);
    crdt_hlc h = tu_hlc(1000, 0);
    crdt_dot ev;
    OK(crdt_register_set(s, NULL, &o1, &h, "reg", "uno", 3));
    OK(crdt_register_set(b, NULL, &o2, &h, "reg", "due", 3));
    OK(crdt_set_add(s, NULL, &o1, "set", "a", 1));
    OK(crdt_set_add(s, NULL, &o1, "set", "b", 1));
    OK(crdt_set_add(b, NULL, &o2, "set", "a", 1));
    OK(tu_counter_add(s, NULL, &o1, "ctr", 5));
    OK(tu_counter_add(b, NULL, &o2, "ctr", -3));
    OK(crdt_timeline_add(s, NULL, &o1, &h, "tl", "one", 3, &ev));
    OK(crdt_timeline_add(b, NULL, &o2, &h, "tl", "two", 3, &g_ev_two));
    OK(crdt_timeline_add(s, NULL, &o1, &h, "tl", "three", 5, &g_ev_three));
    OK(crdt_timeline_redact(s, NULL, "tl", &ev));
    OK(crdt_scope_join(s, b));
    crdt_scope_free(b);
}

/* ---------------------------------------------------------------------------------------- */

static void test_strerror(void **state)
{
    (void)state;
    for (int i = 0; i < CRDT_ERR_COUNT; i++) {
        const char *t = crdt_strerror((crdt_err)i);
        assert_non_null(t);
        assert_true(strlen(t) > 0);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(t, crdt_strerror((crdt_err)j));
    }
    const char *t = crdt_strerror(CRDT_ERR_COUNT);
    assert_non_null(t);
    assert_true(strlen(t) > 0);
    t = crdt_strerror((crdt_err)-1);
    assert_non_null(t);
    assert_true(strlen(t) > 0);
    assert_non_null(crdt_mem_default());
    assert_non_null(crdt_mem_default()->realloc_fn);
}

static void test_null_mutators(void **state)
{
    (void)state;
    crdt_scope *s = mk(NULL), *d = mk(NULL);
    fill(s);
    crdt_scope *before = clone_of(s);
    crdt_origin o = tu_origin(1);
    crdt_hlc h = tu_hlc(5000, 0);
    crdt_dot ev = tu_dot(1, 1);
    crdt_scope *out = NULL;

    assert_int_equal(crdt_scope_new(NULL, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_scope_clone(NULL, &out), CRDT_EINVAL);
    assert_null(out);
    assert_int_equal(crdt_scope_clone(s, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_scope_join(NULL, s), CRDT_EINVAL);
    assert_int_equal(crdt_scope_join(d, NULL), CRDT_EINVAL);

    assert_int_equal(crdt_register_set(NULL, d, &o, &h, "reg", "v", 1), CRDT_EINVAL);
    assert_int_equal(crdt_register_set(s, d, NULL, &h, "reg", "v", 1), CRDT_EINVAL);
    assert_int_equal(crdt_register_set(s, d, &o, NULL, "reg", "v", 1), CRDT_EINVAL);
    assert_int_equal(crdt_register_set(s, d, &o, &h, NULL, "v", 1), CRDT_EINVAL);
    assert_int_equal(crdt_register_set(s, d, &o, &h, "reg", NULL, 1), CRDT_EINVAL);

    assert_int_equal(crdt_set_add(NULL, d, &o, "set", "e", 1), CRDT_EINVAL);
    assert_int_equal(crdt_set_add(s, d, NULL, "set", "e", 1), CRDT_EINVAL);
    assert_int_equal(crdt_set_add(s, d, &o, NULL, "e", 1), CRDT_EINVAL);
    assert_int_equal(crdt_set_add(s, d, &o, "set", NULL, 1), CRDT_EINVAL);

    assert_int_equal(crdt_set_remove(NULL, d, "set", "a", 1), CRDT_EINVAL);
    assert_int_equal(crdt_set_remove(s, d, NULL, "a", 1), CRDT_EINVAL);
    assert_int_equal(crdt_set_remove(s, d, "set", NULL, 1), CRDT_EINVAL);

    assert_int_equal(crdt_counter_add(NULL, d, &o, "ctr", 1), CRDT_EINVAL);
    assert_int_equal(crdt_counter_add(s, d, NULL, "ctr", 1), CRDT_EINVAL);
    assert_int_equal(crdt_counter_add(s, d, &o, NULL, 1), CRDT_EINVAL);

    assert_int_equal(crdt_timeline_add(NULL, d, &o, &h, "tl", "x", 1, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_add(s, d, NULL, &h, "tl", "x", 1, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_add(s, d, &o, NULL, "tl", "x", 1, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_add(s, d, &o, &h, NULL, "x", 1, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_add(s, d, &o, &h, "tl", NULL, 1, NULL), CRDT_EINVAL);

    assert_int_equal(crdt_timeline_redact(NULL, d, "tl", &ev), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_redact(s, d, NULL, &ev), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_redact(s, d, "tl", NULL), CRDT_EINVAL);

    assert_int_equal(crdt_field_remove(NULL, d, "reg"), CRDT_EINVAL);
    assert_int_equal(crdt_field_remove(s, d, NULL), CRDT_EINVAL);

    assert_int_equal(crdt_scope_append(NULL, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_scope_append(d, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_scope_set_cc(NULL, crdt_scope_cc(s)), CRDT_EINVAL);
    assert_int_equal(crdt_scope_set_cc(d, NULL), CRDT_EINVAL);

    /* Nothing changed, and no delta was made. */
    assert_same(s, before);
    assert_true(crdt_scope_empty(d));
    /* NULL value, element or content with length 0 is the empty string, not an error. */
    OK(crdt_register_set(s, d, &o, &h, "reg", NULL, 0));
    OK(crdt_set_add(s, d, &o, "set", NULL, 0));
    OK(crdt_timeline_add(s, d, &o, &h, "tl", NULL, 0, NULL));
    crdt_scope_free(NULL); /* like free(NULL) */
    crdt_scope_free(s);
    crdt_scope_free(d);
    crdt_scope_free(before);
}

static void test_null_readers(void **state)
{
    (void)state;
    crdt_scope *s = mk(NULL);
    fill(s);
    size_t n;
    int64_t v;
    crdt_reg_value rv;
    crdt_bytes b;
    crdt_event ev;
    crdt_entry e;
    crdt_type t;
    const char *name;
    assert_int_equal(crdt_scope_field_at(NULL, 0, &name, &t), CRDT_EINVAL);
    assert_int_equal(crdt_scope_field_at(s, 0, NULL, &t), CRDT_EINVAL);
    assert_int_equal(crdt_scope_field_type(NULL, "reg", &t), CRDT_EINVAL);
    assert_int_equal(crdt_scope_field_type(s, NULL, &t), CRDT_EINVAL);
    assert_int_equal(crdt_scope_field_type(s, "reg", NULL), CRDT_EINVAL);
    assert_int_equal(crdt_register_count(NULL, "reg", &n), CRDT_EINVAL);
    assert_int_equal(crdt_register_count(s, NULL, &n), CRDT_EINVAL);
    assert_int_equal(crdt_register_count(s, "reg", NULL), CRDT_EINVAL);
    assert_int_equal(crdt_register_at(NULL, "reg", 0, &rv), CRDT_EINVAL);
    assert_int_equal(crdt_register_at(s, NULL, 0, &rv), CRDT_EINVAL);
    assert_int_equal(crdt_register_at(s, "reg", 0, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_set_count(NULL, "set", &n), CRDT_EINVAL);
    assert_int_equal(crdt_set_count(s, NULL, &n), CRDT_EINVAL);
    assert_int_equal(crdt_set_count(s, "set", NULL), CRDT_EINVAL);
    assert_int_equal(crdt_set_at(NULL, "set", 0, &b), CRDT_EINVAL);
    assert_int_equal(crdt_set_at(s, NULL, 0, &b), CRDT_EINVAL);
    assert_int_equal(crdt_set_at(s, "set", 0, NULL), CRDT_EINVAL);
    assert_false(crdt_set_contains(NULL, "set", "a", 1));
    assert_false(crdt_set_contains(s, NULL, "a", 1));
    assert_false(crdt_set_contains(s, "set", NULL, 1));
    assert_int_equal(crdt_counter_value(NULL, "ctr", &v), CRDT_EINVAL);
    assert_int_equal(crdt_counter_value(s, NULL, &v), CRDT_EINVAL);
    assert_int_equal(crdt_counter_value(s, "ctr", NULL), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_count(NULL, "tl", &n), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_count(s, NULL, &n), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_count(s, "tl", NULL), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_at(NULL, "tl", 0, &ev), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_at(s, NULL, 0, &ev), CRDT_EINVAL);
    assert_int_equal(crdt_timeline_at(s, "tl", 0, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_scope_entry_at(NULL, 0, &e), CRDT_EINVAL);
    assert_int_equal(crdt_scope_entry_at(s, 0, NULL), CRDT_EINVAL);
    crdt_scope_free(s);
}

static void test_null_cc(void **state)
{
    (void)state;
    crdt_cc cc, other;
    crdt_cc_init(&cc, NULL);
    crdt_cc_init(&other, NULL);
    crdt_dot d = tu_dot(1, 1);
    OK(crdt_cc_add(&other, &d));
    assert_int_equal(crdt_cc_add(NULL, &d), CRDT_EINVAL);
    assert_int_equal(crdt_cc_add(&cc, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_cc_join(NULL, &other), CRDT_EINVAL);
    assert_int_equal(crdt_cc_join(&cc, NULL), CRDT_EINVAL);
    assert_int_equal(crdt_cc_copy(NULL, &other), CRDT_EINVAL);
    assert_int_equal(crdt_cc_copy(&cc, NULL), CRDT_EINVAL);
    assert_int_equal(cc.nvv + cc.ncloud, 0);
    assert_int_equal(other.nvv, 1);
    crdt_cc_fini(&cc);
    crdt_cc_fini(&other);
}

static void test_limits(void **state)
{
    (void)state;
    crdt_scope *s = mk(NULL), *d = mk(NULL);
    fill(s);
    crdt_scope *before = clone_of(s);
    crdt_origin o = tu_origin(1);
    crdt_hlc h = tu_hlc(5000, 0);
    crdt_dot ev = tu_dot(1, 1);
    char name64[CRDT_FIELD_MAX + 1], name65[CRDT_FIELD_MAX + 2];
    memset(name64, 'f', CRDT_FIELD_MAX);
    name64[CRDT_FIELD_MAX] = '\0';
    memset(name65, 'f', CRDT_FIELD_MAX + 1);
    name65[CRDT_FIELD_MAX + 1] = '\0';
    uint8_t *big = calloc(CRDT_VALUE_MAX + 1, 1);
    assert_non_null(big);
    size_t n;
    int64_t v;

    /* Field names: empty and 65 bytes are refused by every mutator and reader. */
    const char *badnames[] = { "", name65 };
    for (int i = 0; i < 2; i++) {
        const char *f = badnames[i];
        assert_int_equal(crdt_register_set(s, d, &o, &h, f, "v", 1), CRDT_ELIMIT);
        assert_int_equal(crdt_set_add(s, d, &o, f, "e", 1), CRDT_ELIMIT);
        assert_int_equal(crdt_set_remove(s, d, f, "e", 1), CRDT_ELIMIT);
        assert_int_equal(tu_counter_add(s, d, &o, f, 1), CRDT_ELIMIT);
        assert_int_equal(crdt_timeline_add(s, d, &o, &h, f, "x", 1, NULL), CRDT_ELIMIT);
        assert_int_equal(crdt_timeline_redact(s, d, f, &ev), CRDT_ELIMIT);
        assert_int_equal(crdt_field_remove(s, d, f), CRDT_ELIMIT);
        assert_int_equal(crdt_register_count(s, f, &n), CRDT_ELIMIT);
        assert_int_equal(crdt_counter_value(s, f, &v), CRDT_ELIMIT);
    }
    /* Values, elements and contents: 65536 bytes fit, 65537 do not. */
    assert_int_equal(crdt_register_set(s, d, &o, &h, "reg", big, CRDT_VALUE_MAX + 1), CRDT_ELIMIT);
    assert_int_equal(crdt_set_add(s, d, &o, "set", big, CRDT_VALUE_MAX + 1), CRDT_ELIMIT);
    assert_int_equal(crdt_set_remove(s, d, "set", big, CRDT_VALUE_MAX + 1), CRDT_ELIMIT);
    assert_int_equal(
        crdt_timeline_add(s, d, &o, &h, "tl", big, CRDT_VALUE_MAX + 1, NULL), CRDT_ELIMIT);
    assert_int_equal(crdt_register_set(s, d, &o, &h, "reg", big, SIZE_MAX), CRDT_ELIMIT);
    assert_same(s, before);
    assert_true(crdt_scope_empty(d));

    /* At the limits exactly: accepted and read back whole. */
    OK(crdt_register_set(s, d, &o, &h, name64, big, CRDT_VALUE_MAX));
    crdt_reg_value rv;
    OK(crdt_register_at(s, name64, 0, &rv));
    assert_int_equal(rv.value.len, CRDT_VALUE_MAX);
    OK(crdt_set_add(s, d, &o, "set", big, CRDT_VALUE_MAX));
    assert_true(crdt_set_contains(s, "set", big, CRDT_VALUE_MAX));
    OK(crdt_timeline_add(s, d, &o, &h, "tl", big, CRDT_VALUE_MAX, NULL));

    /* An HLC beyond 48 bits is not a timestamp: refused, nothing changes. */
    crdt_scope *before2 = clone_of(s), *d2 = clone_of(d);
    crdt_hlc bad = tu_hlc(CRDT_HLC_WALL_MAX + 1, 0);
    assert_int_not_equal(crdt_register_set(s, d, &o, &bad, "reg", "v", 1), CRDT_OK);
    assert_int_not_equal(crdt_timeline_add(s, d, &o, &bad, "tl", "v", 1, NULL), CRDT_OK);
    assert_same(s, before2);
    assert_same(d, d2);
    free(big);
    crdt_scope_free(s);
    crdt_scope_free(d);
    crdt_scope_free(d2);
    crdt_scope_free(before);
    crdt_scope_free(before2);
}

/* The entry-count limit (1,000,000 entries in one scope): append, join and mutators. */
static void test_entry_limit(void **state)
{
    (void)state;
    crdt_scope *s = mk(NULL);
    crdt_cc cc;
    crdt_cc_init(&cc, NULL);
    crdt_entry e;
    memset(&e, 0, sizeof(e));
    e.field.p = (const uint8_t *)"s";
    e.field.len = 1;
    e.type = CRDT_SET;
    uint8_t elem[4];
    e.elem.p = elem;
    e.elem.len = sizeof(elem);
    for (uint32_t i = 0; i < CRDT_ENTRIES_MAX; i++) {
        elem[0] = (uint8_t)(i >> 24);
        elem[1] = (uint8_t)(i >> 16);
        elem[2] = (uint8_t)(i >> 8);
        elem[3] = (uint8_t)i;
        e.dot = tu_dot(1, i + 1);
        crdt_err err = crdt_scope_append(s, &e);
        if (err != CRDT_OK)
            fail_msg("append %u: %s", i, crdt_strerror(err));
    }
    crdt_dot top = tu_dot(1, CRDT_ENTRIES_MAX + 1);
    for (uint64_t c = 1; c <= CRDT_ENTRIES_MAX + 1; c++) {
        crdt_dot d = tu_dot(1, c);
        OK(crdt_cc_add(&cc, &d));
    }
    OK(crdt_scope_set_cc(s, &cc));
    e.elem.p = (const uint8_t *)"\xff\xff\xff\xff\xff";
    e.elem.len = 5;
    e.dot = top;
    assert_int_equal(crdt_scope_append(s, &e), CRDT_ELIMIT);
    assert_int_equal(crdt_scope_entry_count(s), CRDT_ENTRIES_MAX);
    /* A mutator that would add an entry. */
    crdt_origin o2 = tu_origin(2);
    assert_int_equal(crdt_set_add(s, NULL, &o2, "t", "x", 1), CRDT_ELIMIT);
    assert_int_equal(crdt_scope_entry_count(s), CRDT_ENTRIES_MAX);
    /* A join that would pass the limit. */
    crdt_scope *other = mk(NULL);
    OK(crdt_set_add(other, NULL, &o2, "t", "x", 1));
    assert_int_equal(crdt_scope_join(s, other), CRDT_ELIMIT);
    assert_int_equal(crdt_scope_entry_count(s), CRDT_ENTRIES_MAX);
    assert_false(crdt_set_contains(s, "t", "x", 1));
    /* A change that replaces an entry stays within the limit. */
    OK(crdt_set_remove(s, NULL, "s", "\0\0\0\0", 4));
    OK(crdt_set_add(s, NULL, &o2, "t", "x", 1));
    crdt_cc_fini(&cc);
    crdt_scope_free(other);
    crdt_scope_free(s);
}

static void test_not_found(void **state)
{
    (void)state;
    crdt_scope *s = mk(NULL), *d = mk(NULL);
    fill(s);
    crdt_scope *before = clone_of(s);
    size_t n;
    int64_t v;
    crdt_reg_value rv;
    crdt_bytes b;
    crdt_event ev;
    crdt_entry e;
    crdt_type t;
    const char *name;
    assert_int_equal(crdt_scope_field_type(s, "none", &t), CRDT_ENOTFOUND);
    assert_int_equal(crdt_register_count(s, "none", &n), CRDT_ENOTFOUND);
    assert_int_equal(crdt_register_at(s, "none", 0, &rv), CRDT_ENOTFOUND);
    assert_int_equal(crdt_set_count(s, "none", &n), CRDT_ENOTFOUND);
    assert_int_equal(crdt_set_at(s, "none", 0, &b), CRDT_ENOTFOUND);
    assert_int_equal(crdt_counter_value(s, "none", &v), CRDT_ENOTFOUND);
    assert_int_equal(crdt_timeline_count(s, "none", &n), CRDT_ENOTFOUND);
    assert_int_equal(crdt_timeline_at(s, "none", 0, &ev), CRDT_ENOTFOUND);
    /* Indices past the end. */
    assert_int_equal(crdt_register_at(s, "reg", 2, &rv), CRDT_ENOTFOUND);
    assert_int_equal(crdt_set_at(s, "set", 2, &b), CRDT_ENOTFOUND);
    assert_int_equal(crdt_timeline_at(s, "tl", 3, &ev), CRDT_ENOTFOUND);
    assert_int_equal(crdt_scope_entry_at(s, crdt_scope_entry_count(s), &e), CRDT_ENOTFOUND);
    assert_int_equal(crdt_scope_field_at(s, 4, &name, &t), CRDT_ENOTFOUND);
    /* Mutators of things that are not there. */
    crdt_dot none = tu_dot(9, 1);
    assert_int_equal(crdt_set_remove(s, d, "set", "zz", 2), CRDT_ENOTFOUND);
    assert_int_equal(crdt_set_remove(s, d, "none", "a", 1), CRDT_ENOTFOUND);
    assert_int_equal(crdt_timeline_redact(s, d, "tl", &none), CRDT_ENOTFOUND);
    assert_int_equal(crdt_timeline_redact(s, d, "none", &none), CRDT_ENOTFOUND);
    assert_int_equal(crdt_field_remove(s, d, "none"), CRDT_ENOTFOUND);
    assert_same(s, before);
    assert_true(crdt_scope_empty(d));
    crdt_scope_free(s);
    crdt_scope_free(d);
    crdt_scope_free(before);
}

static void test_counter_overflow(void **state)
{
    (void)state;
    crdt_scope *s = mk(NULL), *d = mk(NULL);
    crdt_origin a = tu_origin(1), b = tu_origin(2), c = tu_origin(3);
    int64_t v;
    OK(tu_counter_add(s, d, &a, "n", INT64_MAX));
    crdt_scope *before = clone_of(s), *dbefore = clone_of(d);
    assert_int_equal(tu_counter_add(s, d, &a, "n", 1), CRDT_EOVERFLOW);
    assert_same(s, before);
    assert_same(d, dbefore);
    /* Decrements are counted apart: -1 then +1 still passes INT64_MAX in increments. */
    OK(tu_counter_add(s, d, &a, "n", -1));
    OK(crdt_counter_value(s, "n", &v));
    assert_int_equal(v, INT64_MAX - 1);
    crdt_scope_free(before);
    crdt_scope_free(dbefore);
    before = clone_of(s);
    dbefore = clone_of(d);
    assert_int_equal(tu_counter_add(s, d, &a, "n", 1), CRDT_EOVERFLOW);
    assert_same(s, before);
    assert_same(d, dbefore);

    /* Decrements: INT64_MIN alone is more than INT64_MAX of decrements. */
    assert_int_equal(tu_counter_add(s, d, &b, "m", INT64_MIN), CRDT_EOVERFLOW);
    assert_same(s, before);
    OK(tu_counter_add(s, d, &b, "m", -INT64_MAX));
    OK(crdt_counter_value(s, "m", &v));
    assert_int_equal(v, -INT64_MAX);
    crdt_scope_free(before);
    crdt_scope_free(dbefore);
    before = clone_of(s);
    dbefore = clone_of(d);
    assert_int_equal(tu_counter_add(s, d, &b, "m", -1), CRDT_EOVERFLOW);
    assert_same(s, before);
    assert_same(d, dbefore);

    /* The value would leave int64 through another origin's add. */
    crdt_scope *s2 = mk(NULL);
    OK(tu_counter_add(s2, NULL, &a, "n", INT64_MAX));
    crdt_scope *s2b = clone_of(s2);
    assert_int_equal(tu_counter_add(s2, NULL, &c, "n", 1), CRDT_EOVERFLOW);
    assert_same(s2, s2b);
    OK(tu_counter_add(s2, NULL, &c, "n", -1));

    /* Concurrent adds whose sum leaves int64: the join holds both, the read reports it. */
    crdt_scope *x = mk(NULL), *y = mk(NULL);
    OK(tu_counter_add(x, NULL, &a, "n", INT64_MAX));
    OK(tu_counter_add(y, NULL, &b, "n", 2));
    OK(crdt_scope_join(x, y));
    assert_int_equal(crdt_counter_value(x, "n", &v), CRDT_EOVERFLOW);
    crdt_scope *all[] = { s, d, before, dbefore, s2, s2b, x, y };
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        crdt_scope_free(all[i]);
}

/* One origin that signed two different payloads with one dot: the join refuses (I10). */
static void test_conflict(void **state)
{
    (void)state;
    crdt_origin o = tu_origin(1);
    crdt_hlc h = tu_hlc(10, 0), h2 = tu_hlc(11, 0);
    for (int kind = 0; kind < 5; kind++) {
        crdt_scope *x = mk(NULL), *y = mk(NULL);
        switch (kind) {
        case 0: /* register, other value */
            OK(crdt_register_set(x, NULL, &o, &h, "f", "a", 1));
            OK(crdt_register_set(y, NULL, &o, &h, "f", "b", 1));
            break;
        case 1: /* register, same value, other HLC */
            OK(crdt_register_set(x, NULL, &o, &h, "f", "a", 1));
            OK(crdt_register_set(y, NULL, &o, &h2, "f", "a", 1));
            break;
        case 2: /* counter totals */
            OK(tu_counter_add(x, NULL, &o, "f", 1));
            OK(tu_counter_add(y, NULL, &o, "f", 2));
            break;
        case 3: /* timeline content */
            OK(crdt_timeline_add(x, NULL, &o, &h, "f", "a", 1, NULL));
            OK(crdt_timeline_add(y, NULL, &o, &h, "f", "b", 1, NULL));
            break;
        default: /* timeline HLC */
            OK(crdt_timeline_add(x, NULL, &o, &h, "f", "a", 1, NULL));
            OK(crdt_timeline_add(y, NULL, &o, &h2, "f", "a", 1, NULL));
            break;
        }
        crdt_scope *xb = clone_of(x), *yb = clone_of(y);
        assert_int_equal(crdt_scope_join(x, y), CRDT_ECONFLICT);
        assert_int_equal(crdt_scope_join(y, x), CRDT_ECONFLICT);
        assert_same(x, xb);
        assert_same(y, yb);
        crdt_scope_free(x);
        crdt_scope_free(y);
        crdt_scope_free(xb);
        crdt_scope_free(yb);
    }
}

static void test_append_errors(void **state)
{
    (void)state;
    crdt_scope *s = mk(NULL);
    crdt_entry e;
    memset(&e, 0, sizeof(e));
    e.field.p = (const uint8_t *)"f";
    e.field.len = 1;
    e.type = CRDT_REGISTER;
    e.dot = tu_dot(1, 1);
    e.hlc = tu_hlc(1, 0);
    crdt_entry bad = e;
    bad.field.len = 0;
    assert_int_not_equal(crdt_scope_append(s, &bad), CRDT_OK);
    bad = e;
    bad.field.p = (const uint8_t *)"a\0b";
    bad.field.len = 3;
    assert_int_equal(crdt_scope_append(s, &bad), CRDT_EINVAL);
    bad = e;
    bad.field.p = NULL;
    assert_int_equal(crdt_scope_append(s, &bad), CRDT_EINVAL);
    bad = e;
    bad.value.len = 3; /* length without bytes */
    assert_int_equal(crdt_scope_append(s, &bad), CRDT_EINVAL);
    bad = e;
    bad.value.p = (const uint8_t *)"x";
    bad.value.len = CRDT_VALUE_MAX + 1;
    assert_int_equal(crdt_scope_append(s, &bad), CRDT_ELIMIT);
    bad = e;
    bad.elem.p = (const uint8_t *)"x"; /* registers have no element */
    bad.elem.len = 1;
    assert_int_equal(crdt_scope_append(s, &bad), CRDT_EINVAL);
    bad = e;
    bad.redacted = true; /* only timeline entries are redacted */
    assert_int_equal(crdt_scope_append(s, &bad), CRDT_EINVAL);
    bad = e;
    bad.type = CRDT_TIMELINE;
    bad.redacted = true;
    bad.value.p = (const uint8_t *)"x"; /* redacted with content */
    bad.value.len = 1;
    assert_int_equal(crdt_scope_append(s, &bad), CRDT_EINVAL);
    bad = e;
    bad.hlc = tu_hlc(CRDT_HLC_WALL_MAX + 1, 0);
    assert_int_equal(crdt_scope_append(s, &bad), CRDT_EINVAL);
    bad = e;
    bad.type = CRDT_COUNTER;
    bad.hlc = tu_hlc(0, 0);
    bad.neg = (uint64_t)INT64_MAX + 1;
    assert_int_equal(crdt_scope_append(s, &bad), CRDT_EINVAL);
    bad = e;
    bad.pos = 1; /* counts on a register */
    assert_int_equal(crdt_scope_append(s, &bad), CRDT_EINVAL);
    assert_int_equal(crdt_scope_entry_count(s), 0);
    OK(crdt_scope_append(s, &e));
    /* An empty context does not cover the entry. */
    crdt_cc cc;
    crdt_cc_init(&cc, NULL);
    assert_int_equal(crdt_scope_set_cc(s, &cc), CRDT_EORDER);
    crdt_cc_fini(&cc);
    crdt_scope_free(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Allocation failure at every allocation index.                                            */

typedef crdt_err (*op_fn)(crdt_scope *s, crdt_scope *d);

static crdt_err op_register(crdt_scope *s, crdt_scope *d)
{
    crdt_origin o = tu_origin(3);
    crdt_hlc h = tu_hlc(2000, 0);
    return crdt_register_set(s, d, &o, &h, "reg", "tre", 3);
}
static crdt_err op_register_new_field(crdt_scope *s, crdt_scope *d)
{
    crdt_origin o = tu_origin(3);
    crdt_hlc h = tu_hlc(2000, 0);
    return crdt_register_set(s, d, &o, &h, "aaa", "x", 1);
}
static crdt_err op_set_add(crdt_scope *s, crdt_scope *d)
{
    crdt_origin o = tu_origin(3);
    return crdt_set_add(s, d, &o, "set", "a", 1);
}
static crdt_err op_set_remove(crdt_scope *s, crdt_scope *d)
{
    return crdt_set_remove(s, d, "set", "a", 1);
}
static crdt_err op_counter(crdt_scope *s, crdt_scope *d)
{
    crdt_origin o = tu_origin(1);
    return tu_counter_add(s, d, &o, "ctr", -7);
}
static crdt_err op_timeline_add(crdt_scope *s, crdt_scope *d)
{
    crdt_origin o = tu_origin(3);
    crdt_hlc h = tu_hlc(500, 0);
    return crdt_timeline_add(s, d, &o, &h, "tl", "quattro", 7, NULL);
}
static crdt_err op_timeline_redact(crdt_scope *s, crdt_scope *d)
{
    return crdt_timeline_redact(s, d, "tl", &g_ev_two);
}
static crdt_err op_field_remove(crdt_scope *s, crdt_scope *d)
{
    return crdt_field_remove(s, d, "set");
}

static const crdt_scope *g_join_src;
static crdt_err op_join(crdt_scope *s, crdt_scope *d)
{
    (void)d;
    return crdt_scope_join(s, g_join_src);
}

/*
 * Run op on s (and d, which may be NULL) with the allocation of index N failing, for N = 0,
 * 1, 2, ... until it succeeds. Every failure is CRDT_ENOMEM with s and d exactly as before;
 * the success gives what the op gives without failures.
 */
static void run_failing(test_mem *tm, op_fn op, crdt_scope *s, crdt_scope *d, const char *what)
{
    test_mem_disarm(tm);
    crdt_scope *ref_s = clone_of(s), *ref_d = d ? clone_of(d) : NULL;
    assert_int_equal(op(ref_s, ref_d), CRDT_OK);
    long n;
    for (n = 0; n < 100000; n++) {
        test_mem_disarm(tm);
        crdt_scope *bs = clone_of(s), *bd = d ? clone_of(d) : NULL;
        test_mem_arm(tm, n);
        crdt_err err = op(s, d);
        test_mem_disarm(tm);
        if (err == CRDT_OK) {
            assert_int_equal(tm->failures, 0);
            crdt_scope_free(bs);
            crdt_scope_free(bd);
            break;
        }
        if (err != CRDT_ENOMEM || tm->failures != 1 || !crdt_scope_equal(s, bs)
            || (d && !crdt_scope_equal(d, bd))) {
            tu_scope_dump(stderr, "before", bs);
            tu_scope_dump(stderr, "after", s);
            fail_msg("%s: allocation %ld failed: err %s, failures %ld, state %s, delta %s", what, n,
                crdt_strerror(err), tm->failures, crdt_scope_equal(s, bs) ? "same" : "CHANGED",
                (d == NULL || crdt_scope_equal(d, bd)) ? "same" : "CHANGED");
        }
        char why[200];
        if (!tu_scope_invariants(s, why, sizeof(why)))
            fail_msg("%s: allocation %ld failed: %s", what, n, why);
        crdt_scope_free(bs);
        crdt_scope_free(bd);
    }
    assert_true(n > 0); /* the op allocates, so the loop did inject failures */
    assert_true(n < 100000);
    assert_same(s, ref_s);
    if (d)
        assert_same(d, ref_d);
    crdt_scope_free(ref_s);
    crdt_scope_free(ref_d);
}

static void test_enomem_mutators(void **state)
{
    (void)state;
    test_mem tm;
    test_mem_init(&tm);
    struct {
        op_fn op;
        const char *name;
    } ops[] = {
        { op_register, "register_set" },
        { op_register_new_field, "register_set (new field)" },
        { op_set_add, "set_add" },
        { op_set_remove, "set_remove" },
        { op_counter, "counter_add" },
        { op_timeline_add, "timeline_add" },
        { op_timeline_redact, "timeline_redact" },
        { op_field_remove, "field_remove" },
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        for (int with_delta = 0; with_delta < 2; with_delta++) {
            crdt_scope *s = mk(&tm.mem), *d = NULL;
            fill(s);
            if (with_delta) {
                /* A delta accumulator that already holds an earlier change. */
                d = mk(&tm.mem);
                crdt_origin o = tu_origin(3);
                OK(crdt_set_add(s, d, &o, "set", "c", 1));
            }
            run_failing(&tm, ops[i].op, s, d, ops[i].name);
            crdt_scope_free(s);
            crdt_scope_free(d);
        }
    }
    assert_int_equal(tm.live, 0); /* nothing leaked, failures included */
}

static void test_enomem_join(void **state)
{
    (void)state;
    test_mem tm;
    test_mem_init(&tm);
    for (int shape = 0; shape < 3; shape++) {
        crdt_scope *dst = mk(&tm.mem), *src = mk(NULL);
        crdt_origin o = tu_origin(4);
        crdt_hlc h = tu_hlc(3000, 0);
        if (shape != 1)
            fill(dst);
        if (shape != 2) {
            fill(src);
            /* src has seen dst's entries, removed some and added others. */
            OK(crdt_field_remove(src, NULL, "set"));
            OK(crdt_register_set(src, NULL, &o, &h, "reg", "quattro", 7));
            OK(tu_counter_add(src, NULL, &o, "ctr", 9));
            OK(crdt_timeline_add(src, NULL, &o, &h, "new", "e", 1, NULL));
            OK(crdt_timeline_redact(src, NULL, "tl", &g_ev_three));
        }
        if (shape == 2) {
            /* src is a small delta made on a copy of dst. */
            crdt_scope *copy = clone_of(dst);
            OK(crdt_register_set(copy, src, &o, &h, "reg", "delta", 5));
            crdt_scope_free(copy);
        }
        if (shape == 0) {
            /* and dst has concurrent changes of its own. */
            crdt_origin p = tu_origin(5);
            OK(crdt_set_add(dst, NULL, &p, "set", "z", 1));
            OK(crdt_register_set(dst, NULL, &p, &h, "reg", "cinque", 6));
        }
        g_join_src = src;
        run_failing(&tm, op_join, dst, NULL, "join");
        crdt_scope_free(dst);
        crdt_scope_free(src);
    }
    assert_int_equal(tm.live, 0);
}

static void test_enomem_scope_lifecycle(void **state)
{
    (void)state;
    test_mem tm;
    test_mem_init(&tm);
    crdt_scope *out = NULL;
    test_mem_arm(&tm, 0);
    assert_int_equal(crdt_scope_new(&tm.mem, &out), CRDT_ENOMEM);
    test_mem_disarm(&tm);
    assert_null(out);

    crdt_scope *s = mk(&tm.mem);
    fill(s);
    /* Clone: every allocation index. */
    long n;
    for (n = 0; n < 10000; n++) {
        crdt_scope *c = NULL;
        test_mem_arm(&tm, n);
        crdt_err err = crdt_scope_clone(s, &c);
        test_mem_disarm(&tm);
        if (err == CRDT_OK) {
            assert_true(crdt_scope_equal(c, s));
            crdt_scope_free(c);
            break;
        }
        assert_int_equal(err, CRDT_ENOMEM);
        assert_null(c);
    }
    assert_true(n > 0);

    /* Rebuild through append and set_cc, failing each allocation of each call. */
    crdt_scope *r = mk(&tm.mem);
    for (size_t i = 0; i < crdt_scope_entry_count(s); i++) {
        crdt_entry e;
        OK(crdt_scope_entry_at(s, i, &e));
        for (n = 0; n < 10000; n++) {
            test_mem_arm(&tm, n);
            crdt_err err = crdt_scope_append(r, &e);
            test_mem_disarm(&tm);
            if (err == CRDT_OK)
                break;
            assert_int_equal(err, CRDT_ENOMEM);
            assert_int_equal(crdt_scope_entry_count(r), i);
        }
    }
    for (n = 0; n < 10000; n++) {
        crdt_scope *before = clone_of(r);
        test_mem_arm(&tm, n);
        crdt_err err = crdt_scope_set_cc(r, crdt_scope_cc(s));
        test_mem_disarm(&tm);
        if (err == CRDT_OK) {
            crdt_scope_free(before);
            break;
        }
        assert_int_equal(err, CRDT_ENOMEM);
        assert_same(r, before);
        crdt_scope_free(before);
    }
    assert_true(n > 0);
    assert_same(r, s);
    crdt_scope_free(r);
    crdt_scope_free(s);
    assert_int_equal(tm.live, 0);
}

static void test_enomem_cc(void **state)
{
    (void)state;
    test_mem tm;
    test_mem_init(&tm);
    crdt_cc a, b, ref;
    crdt_cc_init(&a, &tm.mem);
    crdt_cc_init(&b, NULL);
    crdt_cc_init(&ref, NULL);
    /* cc_add into an empty context and into a cloud. */
    crdt_dot dots[] = { tu_dot(1, 1), tu_dot(1, 5), tu_dot(2, 3), tu_dot(0, 1), tu_dot(1, 9) };
    for (size_t i = 0; i < sizeof(dots) / sizeof(dots[0]); i++) {
        long n;
        for (n = 0; n < 1000; n++) {
            OK(crdt_cc_copy(&ref, &a));
            test_mem_arm(&tm, n);
            crdt_err err = crdt_cc_add(&a, &dots[i]);
            test_mem_disarm(&tm);
            if (err == CRDT_OK)
                break;
            assert_int_equal(err, CRDT_ENOMEM);
            assert_true(crdt_cc_equal(&a, &ref));
        }
        assert_true(crdt_cc_contains(&a, &dots[i]));
    }
    for (uint64_t c = 1; c < 40; c += 2) {
        crdt_dot d = tu_dot(3, c);
        OK(crdt_cc_add(&b, &d));
    }
    crdt_dot d7 = tu_dot(7, 1);
    OK(crdt_cc_add(&b, &d7));
    long n;
    for (n = 0; n < 1000; n++) {
        OK(crdt_cc_copy(&ref, &a));
        test_mem_arm(&tm, n);
        crdt_err err = crdt_cc_join(&a, &b);
        test_mem_disarm(&tm);
        if (err == CRDT_OK)
            break;
        assert_int_equal(err, CRDT_ENOMEM);
        assert_true(crdt_cc_equal(&a, &ref));
    }
    assert_true(n > 0);
    assert_true(crdt_cc_includes(&a, &b));
    crdt_cc c;
    crdt_cc_init(&c, &tm.mem);
    OK(crdt_cc_add(&c, &d7));
    for (n = 0; n < 1000; n++) {
        test_mem_arm(&tm, n);
        crdt_err err = crdt_cc_copy(&c, &a);
        test_mem_disarm(&tm);
        if (err == CRDT_OK)
            break;
        assert_int_equal(err, CRDT_ENOMEM);
        assert_int_equal(c.nvv, 1);
        assert_int_equal(c.ncloud, 0);
        assert_true(crdt_cc_contains(&c, &d7));
    }
    assert_true(n > 0);
    assert_true(crdt_cc_equal(&c, &a));
    crdt_cc_fini(&a);
    crdt_cc_fini(&b);
    crdt_cc_fini(&c);
    crdt_cc_fini(&ref);
    assert_int_equal(tm.live, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror),
        cmocka_unit_test(test_null_mutators),
        cmocka_unit_test(test_null_readers),
        cmocka_unit_test(test_null_cc),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_entry_limit),
        cmocka_unit_test(test_not_found),
        cmocka_unit_test(test_counter_overflow),
        cmocka_unit_test(test_conflict),
        cmocka_unit_test(test_append_errors),
        cmocka_unit_test(test_enomem_mutators),
        cmocka_unit_test(test_enomem_join),
        cmocka_unit_test(test_enomem_scope_lifecycle),
        cmocka_unit_test(test_enomem_cc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
