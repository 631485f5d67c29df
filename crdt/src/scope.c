/*
 * Scopes: one sorted array of entries (field, element, dot, payload) and one causal context.
 *
 * Every CRDT of a scope is a dot store (Almeida, Shoker, Baquero: "Delta State Replicated Data
 * Types", 2018): a register and a timeline are dot -> payload, a set is element -> dots, a
 * counter is dot -> (pos, neg) with one live dot per origin, and the scope maps field names to
 * them. Written out flat and sorted by (field, element, dot), all four share one join: keep
 * an entry both sides have, and an entry one side has unless the other side's context has
 * seen its dot (and so removed it). See SPEC.md for the invariants.
 */
#include "internal.h"

#include <string.h>

typedef struct entry {
    uint8_t *buf; /* field bytes, NUL, element bytes, value bytes; owned */
    uint32_t elen, vlen;
    uint8_t flen;
    uint8_t type;
    bool redacted;
    uint8_t mark;  /* join bookkeeping: 1 = dst entry kept, 2 = fresh copy of a src entry */
    uint32_t wipe; /* join bookkeeping: content bytes to wipe when the join commits */
    crdt_dot dot;
    crdt_hlc hlc;
    uint64_t pos, neg;
} entry;

struct crdt_scope {
    const crdt_mem *mem;
    entry *e;
    size_t n, cap;
    crdt_cc cc;
};

static const uint8_t *e_field(const entry *e)
{
    return e->buf;
}
static const uint8_t *e_elem(const entry *e)
{
    return e->buf + e->flen + 1;
}
static const uint8_t *e_value(const entry *e)
{
    return e->buf + e->flen + 1 + e->elen;
}

static int key_cmp(const uint8_t *fa, size_t fla, const uint8_t *ea, size_t ela, const crdt_dot *da,
    const uint8_t *fb, size_t flb, const uint8_t *eb, size_t elb, const crdt_dot *db)
{
    int c = crdt__bytes_cmp(fa, fla, fb, flb);
    if (c != 0)
        return c;
    c = crdt__bytes_cmp(ea, ela, eb, elb);
    if (c != 0)
        return c;
    return crdt_dot_cmp(da, db);
}

static int entry_cmp(const entry *a, const entry *b)
{
    return key_cmp(e_field(a), a->flen, e_elem(a), a->elen, &a->dot, e_field(b), b->flen, e_elem(b),
        b->elen, &b->dot);
}

int crdt_entry_cmp(const crdt_entry *a, const crdt_entry *b)
{
    return key_cmp(a->field.p, a->field.len, a->elem.p, a->elem.len, &a->dot, b->field.p,
        b->field.len, b->elem.p, b->elem.len, &b->dot);
}

static bool same_field(const entry *a, const entry *b)
{
    return a->flen == b->flen && memcmp(e_field(a), e_field(b), a->flen) == 0;
}

static void entry_free(const crdt_mem *mem, entry *e)
{
    crdt__free(mem, e->buf);
    e->buf = NULL;
}

/* A new entry with its own buffer. CRDT_ENOMEM leaves *out untouched. */
static crdt_err entry_make(const crdt_mem *mem, const uint8_t *field, size_t flen,
    const uint8_t *elem, size_t elen, const uint8_t *value, size_t vlen, entry *out)
{
    uint8_t *buf = crdt__alloc(mem, flen + 1 + elen + vlen);
    if (buf == NULL)
        return CRDT_ENOMEM;
    memcpy(buf, field, flen);
    buf[flen] = 0;
    if (elen)
        memcpy(buf + flen + 1, elem, elen);
    if (vlen)
        memcpy(buf + flen + 1 + elen, value, vlen);
    memset(out, 0, sizeof(*out));
    out->buf = buf;
    out->flen = (uint8_t)flen;
    out->elen = (uint32_t)elen;
    out->vlen = (uint32_t)vlen;
    return CRDT_OK;
}

static crdt_err entry_copy(const crdt_mem *mem, const entry *src, entry *out)
{
    entry e;
    crdt_err err = entry_make(
        mem, e_field(src), src->flen, e_elem(src), src->elen, e_value(src), src->vlen, &e);
    if (err != CRDT_OK)
        return err;
    e.type = src->type;
    e.redacted = src->redacted;
    e.dot = src->dot;
    e.hlc = src->hlc;
    e.pos = src->pos;
    e.neg = src->neg;
    *out = e;
    return CRDT_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Life cycle                                                                                */

crdt_err crdt_scope_new(const crdt_mem *mem, crdt_scope **out)
{
    if (out == NULL)
        return CRDT_EINVAL;
    if (mem == NULL)
        mem = crdt_mem_default();
    crdt_scope *s = crdt__alloc(mem, sizeof(*s));
    if (s == NULL)
        return CRDT_ENOMEM;
    memset(s, 0, sizeof(*s));
    s->mem = mem;
    crdt_cc_init(&s->cc, mem);
    *out = s;
    return CRDT_OK;
}

void crdt_scope_clear(crdt_scope *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->n; i++)
        entry_free(s->mem, &s->e[i]);
    crdt__free(s->mem, s->e);
    s->e = NULL;
    s->n = s->cap = 0;
    crdt_cc_fini(&s->cc);
}

void crdt_scope_free(crdt_scope *s)
{
    if (s == NULL)
        return;
    crdt_scope_clear(s);
    crdt__free(s->mem, s);
}

crdt_err crdt_scope_clone(const crdt_scope *s, crdt_scope **out)
{
    if (s == NULL || out == NULL)
        return CRDT_EINVAL;
    crdt_scope *c = NULL;
    crdt_err err = crdt_scope_new(s->mem, &c);
    if (err != CRDT_OK)
        return err;
    err = crdt_scope_join(c, s);
    if (err != CRDT_OK) {
        crdt_scope_free(c);
        return err;
    }
    *out = c;
    return CRDT_OK;
}

const crdt_cc *crdt_scope_cc(const crdt_scope *s)
{
    return s ? &s->cc : NULL;
}

bool crdt_scope_empty(const crdt_scope *s)
{
    return s == NULL || (s->n == 0 && s->cc.nvv == 0 && s->cc.ncloud == 0);
}

/* ---------------------------------------------------------------------------------------- */
/* Join                                                                                      */

/* Join the payloads of one dot present on both sides into *keep (dst's entry). */
static crdt_err payload_join(entry *keep, const entry *other)
{
    if (keep->type != other->type)
        return CRDT_ETYPE;
    if (crdt_hlc_cmp(&keep->hlc, &other->hlc) != 0 || keep->pos != other->pos
        || keep->neg != other->neg)
        return CRDT_ECONFLICT;
    if (keep->type == CRDT_TIMELINE && (keep->redacted || other->redacted)) {
        /* Redaction is the top of an event's content lattice: it wins over any content. */
        if (!keep->redacted) {
            keep->wipe = keep->vlen;
            keep->vlen = 0;
            keep->redacted = true;
        }
        return CRDT_OK;
    }
    if (keep->redacted != other->redacted || keep->vlen != other->vlen
        || memcmp(e_value(keep), e_value(other), keep->vlen) != 0)
        return CRDT_ECONFLICT;
    return CRDT_OK;
}

crdt_err crdt_scope_join(crdt_scope *dst, const crdt_scope *src)
{
    if (dst == NULL || src == NULL)
        return CRDT_EINVAL;
    if (dst == src || crdt_scope_empty(src))
        return CRDT_OK;

    const crdt_mem *mem = dst->mem;
    crdt_err err = CRDT_OK;
    entry *out = NULL;
    size_t nout = 0, cap = dst->n + src->n;
    crdt_cc cc;
    crdt_cc_init(&cc, mem);

    if (cap > 0 && (out = crdt__alloc_array(mem, cap, sizeof(*out))) == NULL) {
        err = CRDT_ENOMEM;
        goto fail;
    }
    if ((err = crdt_cc_copy(&cc, &dst->cc)) != CRDT_OK
        || (err = crdt_cc_join(&cc, &src->cc)) != CRDT_OK)
        goto fail;

    size_t i = 0, j = 0;
    while (i < dst->n || j < src->n) {
        if (nout > CRDT_ENTRIES_MAX) {
            err = CRDT_ELIMIT;
            goto fail;
        }
        int c;
        if (i == dst->n)
            c = 1;
        else if (j == src->n)
            c = -1;
        else
            c = entry_cmp(&dst->e[i], &src->e[j]);
        if (i < dst->n && j < src->n && same_field(&dst->e[i], &src->e[j])
            && dst->e[i].type != src->e[j].type) {
            err = CRDT_ETYPE;
            goto fail;
        }
        if (c < 0) {
            entry *a = &dst->e[i++];
            if (!crdt_cc_contains(&src->cc, &a->dot)) {
                a->mark = 1;
                out[nout] = *a;
                out[nout].mark = 0;
                nout++;
            }
        } else if (c > 0) {
            const entry *b = &src->e[j++];
            if (!crdt_cc_contains(&dst->cc, &b->dot)) {
                if ((err = entry_copy(mem, b, &out[nout])) != CRDT_OK)
                    goto fail;
                out[nout].mark = 2; /* a fresh copy: freed if the join fails */
                nout++;
            }
        } else {
            entry *a = &dst->e[i++];
            const entry *b = &src->e[j++];
            a->mark = 1;
            out[nout] = *a;
            out[nout].mark = 0;
            out[nout].wipe = 0;
            if ((err = payload_join(&out[nout], b)) != CRDT_OK) {
                nout++;
                goto fail;
            }
            nout++;
        }
    }
    if (nout > CRDT_ENTRIES_MAX) {
        err = CRDT_ELIMIT;
        goto fail;
    }

    /* Commit: free what the join dropped, wipe redacted content, swap. */
    for (size_t k = 0; k < dst->n; k++) {
        if (dst->e[k].mark)
            dst->e[k].mark = 0;
        else
            entry_free(mem, &dst->e[k]);
    }
    for (size_t k = 0; k < nout; k++) {
        out[k].mark = 0;
        if (out[k].wipe) {
            memset(out[k].buf + out[k].flen + 1 + out[k].elen, 0, out[k].wipe);
            out[k].wipe = 0;
        }
    }
    crdt__free(mem, dst->e);
    dst->e = out;
    dst->n = nout;
    dst->cap = cap;
    crdt_cc_fini(&dst->cc);
    dst->cc = cc;
    return CRDT_OK;

fail:
    /* Entries copied from src own fresh buffers; entries from dst are still dst's. */
    for (size_t k = 0; k < dst->n; k++)
        dst->e[k].mark = 0;
    for (size_t k = 0; k < nout; k++)
        if (out[k].mark == 2)
            entry_free(mem, &out[k]);
    crdt__free(mem, out);
    crdt_cc_fini(&cc);
    return err;
}

bool crdt_scope_equal(const crdt_scope *a, const crdt_scope *b)
{
    if (a == NULL || b == NULL)
        return a == b;
    if (a->n != b->n || !crdt_cc_equal(&a->cc, &b->cc))
        return false;
    for (size_t i = 0; i < a->n; i++) {
        const entry *x = &a->e[i], *y = &b->e[i];
        if (entry_cmp(x, y) != 0 || x->type != y->type || x->redacted != y->redacted
            || crdt_hlc_cmp(&x->hlc, &y->hlc) != 0 || x->pos != y->pos || x->neg != y->neg
            || x->vlen != y->vlen || memcmp(e_value(x), e_value(y), x->vlen) != 0)
            return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Lookups                                                                                   */

/* First index whose (field, elem) is >= the given key; elem NULL means "any element". */
static size_t lower_bound(
    const crdt_scope *s, const uint8_t *field, size_t flen, const uint8_t *elem, size_t elen)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const entry *e = &s->e[mid];
        int c = crdt__bytes_cmp(e_field(e), e->flen, field, flen);
        if (c == 0 && elem != NULL)
            c = crdt__bytes_cmp(e_elem(e), e->elen, elem, elen);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The index range [*lo, *hi) of a field's entries (and of one element, if elem != NULL). */
static void range_of(
    const crdt_scope *s, const char *field, const void *elem, size_t elen, size_t *lo, size_t *hi)
{
    size_t flen = strlen(field);
    const uint8_t *f = (const uint8_t *)field;
    *lo = lower_bound(s, f, flen, elem, elen);
    size_t k = *lo;
    while (k < s->n && s->e[k].flen == flen && memcmp(e_field(&s->e[k]), f, flen) == 0
        && (elem == NULL || crdt__bytes_cmp(e_elem(&s->e[k]), s->e[k].elen, elem, elen) == 0))
        k++;
    *hi = k;
}

static crdt_err check_field(const char *field)
{
    if (field == NULL)
        return CRDT_EINVAL;
    /* C11 memchr stops at the first match, so this never reads past the name's NUL. */
    const char *end = memchr(field, 0, CRDT_FIELD_MAX + 1);
    if (end == NULL || end == field)
        return CRDT_ELIMIT;
    return CRDT_OK;
}

/* The field's range, checking that it holds `type` if it holds anything. */
static crdt_err field_range(
    const crdt_scope *s, const char *field, crdt_type type, size_t *lo, size_t *hi)
{
    crdt_err err = check_field(field);
    if (err != CRDT_OK)
        return err;
    range_of(s, field, NULL, 0, lo, hi);
    if (*lo < *hi && s->e[*lo].type != type)
        return CRDT_ETYPE;
    return CRDT_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Mutators                                                                                  */

/*
 * Apply a small delta: join it into the accumulated delta (if any) and into the state, so
 * that on any error neither changes. The accumulated delta is joined on a copy first.
 */
static crdt_err apply(crdt_scope *s, crdt_scope *acc, crdt_scope *small)
{
    crdt_err err;
    crdt_scope *acc2 = NULL;
    if (acc != NULL) {
        if ((err = crdt_scope_clone(acc, &acc2)) != CRDT_OK)
            return err;
        if ((err = crdt_scope_join(acc2, small)) != CRDT_OK)
            goto out;
    }
    if ((err = crdt_scope_join(s, small)) != CRDT_OK)
        goto out;
    if (acc != NULL) {
        /* Swap the joined copy's contents into the caller's delta object. */
        crdt_scope tmp = *acc;
        *acc = *acc2;
        *acc2 = tmp;
    }
out:
    crdt_scope_free(acc2);
    return err;
}

/* Start a small delta whose context holds the dots of entries [lo, hi) of s. */
static crdt_err delta_observing(const crdt_scope *s, size_t lo, size_t hi, crdt_scope **out)
{
    crdt_scope *d = NULL;
    crdt_err err = crdt_scope_new(s->mem, &d);
    if (err != CRDT_OK)
        return err;
    for (size_t k = lo; k < hi; k++) {
        if ((err = crdt_cc_add(&d->cc, &s->e[k].dot)) != CRDT_OK) {
            crdt_scope_free(d);
            return err;
        }
    }
    *out = d;
    return CRDT_OK;
}

/* The next dot of `self` in s. */
static crdt_err next_dot(const crdt_scope *s, const crdt_origin *self, crdt_dot *out)
{
    uint64_t m = crdt_cc_max(&s->cc, self);
    if (m == UINT64_MAX)
        return CRDT_EOVERFLOW;
    out->origin = *self;
    out->counter = m + 1;
    return CRDT_OK;
}

/* Add one new entry with a fresh dot to the small delta d (both in entries and context). */
static crdt_err delta_put(crdt_scope *d, const crdt_entry *e)
{
    entry ne;
    crdt_err err = entry_make(
        d->mem, e->field.p, e->field.len, e->elem.p, e->elem.len, e->value.p, e->value.len, &ne);
    if (err != CRDT_OK)
        return err;
    ne.type = (uint8_t)e->type;
    ne.dot = e->dot;
    ne.hlc = e->hlc;
    ne.pos = e->pos;
    ne.neg = e->neg;
    ne.redacted = e->redacted;
    err = crdt__reserve(d->mem, (void **)&d->e, &d->cap, d->n + 1, sizeof(*d->e));
    if (err == CRDT_OK)
        err = crdt_cc_add(&d->cc, &e->dot);
    if (err != CRDT_OK) {
        entry_free(d->mem, &ne);
        return err;
    }
    /* Small deltas hold one new entry, or entries added in order by the caller. */
    size_t k = d->n;
    while (k > 0 && entry_cmp(&d->e[k - 1], &ne) > 0)
        k--;
    memmove(&d->e[k + 1], &d->e[k], (d->n - k) * sizeof(*d->e));
    d->e[k] = ne;
    d->n++;
    return CRDT_OK;
}

/* Shared body of the mutators that replace the entries [lo, hi) with one new entry. */
static crdt_err replace_with(crdt_scope *s, crdt_scope *acc, size_t lo, size_t hi, crdt_entry *ne)
{
    crdt_scope *d = NULL;
    crdt_err err = delta_observing(s, lo, hi, &d);
    if (err != CRDT_OK)
        return err;
    if ((err = delta_put(d, ne)) == CRDT_OK)
        err = apply(s, acc, d);
    crdt_scope_free(d);
    return err;
}

static crdt_err check_common(const crdt_scope *s, const char *field, const void *value, size_t len)
{
    if (s == NULL || field == NULL || (value == NULL && len > 0))
        return CRDT_EINVAL;
    if (len > CRDT_VALUE_MAX)
        return CRDT_ELIMIT;
    return check_field(field);
}

static crdt_entry new_entry(const char *field, crdt_type type, const crdt_dot *dot)
{
    crdt_entry e;
    memset(&e, 0, sizeof(e));
    e.field.p = (const uint8_t *)field;
    e.field.len = strlen(field);
    e.type = type;
    e.dot = *dot;
    return e;
}

/* A write of a value stamped with an HLC: a register's new value replaces every value the
 * field holds; a timeline's new event replaces nothing. *out (optional) gets its dot. */
static crdt_err write_stamped(crdt_scope *s, crdt_scope *delta, const crdt_origin *self,
    const crdt_hlc *hlc, const char *field, crdt_type type, const void *value, size_t len,
    crdt_dot *out)
{
    crdt_err err = check_common(s, field, value, len);
    if (err != CRDT_OK)
        return err;
    if (self == NULL || hlc == NULL)
        return CRDT_EINVAL;
    if (hlc->wall > CRDT_HLC_WALL_MAX)
        return CRDT_ECLOCK;
    size_t lo, hi;
    crdt_dot dot;
    if ((err = field_range(s, field, type, &lo, &hi)) != CRDT_OK
        || (err = next_dot(s, self, &dot)) != CRDT_OK)
        return err;
    crdt_entry ne = new_entry(field, type, &dot);
    ne.hlc = *hlc;
    ne.value.p = value;
    ne.value.len = len;
    if ((err = replace_with(s, delta, type == CRDT_REGISTER ? lo : hi, hi, &ne)) == CRDT_OK
        && out != NULL)
        *out = dot;
    return err;
}

crdt_err crdt_register_set(crdt_scope *s, crdt_scope *delta, const crdt_origin *self,
    const crdt_hlc *hlc, const char *field, const void *value, size_t len)
{
    return write_stamped(s, delta, self, hlc, field, CRDT_REGISTER, value, len, NULL);
}

crdt_err crdt_set_add(crdt_scope *s, crdt_scope *delta, const crdt_origin *self, const char *field,
    const void *elem, size_t len)
{
    crdt_err err = check_common(s, field, elem, len);
    if (err != CRDT_OK)
        return err;
    if (self == NULL)
        return CRDT_EINVAL;
    size_t lo, hi;
    crdt_dot dot;
    if ((err = field_range(s, field, CRDT_SET, &lo, &hi)) != CRDT_OK
        || (err = next_dot(s, self, &dot)) != CRDT_OK)
        return err;
    range_of(s, field, elem ? elem : "", len, &lo, &hi);
    crdt_entry ne = new_entry(field, CRDT_SET, &dot);
    ne.elem.p = elem;
    ne.elem.len = len;
    return replace_with(s, delta, lo, hi, &ne);
}

crdt_err crdt_set_remove(
    crdt_scope *s, crdt_scope *delta, const char *field, const void *elem, size_t len)
{
    crdt_err err = check_common(s, field, elem, len);
    if (err != CRDT_OK)
        return err;
    size_t lo, hi;
    if ((err = field_range(s, field, CRDT_SET, &lo, &hi)) != CRDT_OK)
        return err;
    range_of(s, field, elem ? elem : "", len, &lo, &hi);
    if (lo == hi)
        return CRDT_ENOTFOUND;
    crdt_scope *d = NULL;
    if ((err = delta_observing(s, lo, hi, &d)) != CRDT_OK)
        return err;
    err = apply(s, delta, d);
    crdt_scope_free(d);
    return err;
}

crdt_err crdt_counter_add(crdt_scope *s, crdt_scope *delta, const crdt_origin *counter_origin,
    const char *field, int64_t amount)
{
    crdt_err err = check_common(s, field, NULL, 0);
    if (err != CRDT_OK)
        return err;
    if (counter_origin == NULL)
        return CRDT_EINVAL;
    /* The caller's counter origin carries only this author's entries of this field (SPEC.md
     * I8), so the delta's context can name every earlier entry of it as one range. */
    crdt_origin co = *counter_origin;
    size_t lo, hi;
    crdt_dot dot;
    if ((err = field_range(s, field, CRDT_COUNTER, &lo, &hi)) != CRDT_OK
        || (err = next_dot(s, &co, &dot)) != CRDT_OK)
        return err;
    /* This origin's live entry (at most one) carries its totals so far. */
    uint64_t pos = 0, neg = 0;
    for (size_t k = lo; k < hi; k++) {
        if (crdt_origin_cmp(&s->e[k].dot.origin, &co) == 0) {
            pos = s->e[k].pos;
            neg = s->e[k].neg;
        }
    }
    uint64_t mag = amount < 0 ? (uint64_t)(-(amount + 1)) + 1 : (uint64_t)amount;
    uint64_t *side = amount < 0 ? &neg : &pos;
    if (mag > (uint64_t)INT64_MAX - *side)
        return CRDT_EOVERFLOW;
    *side += mag;
    /* The scope's value must stay readable. */
    int64_t total;
    if ((err = crdt_counter_value(s, field, &total)) != CRDT_OK && err != CRDT_ENOTFOUND)
        return err;
    if (err == CRDT_ENOTFOUND)
        total = 0;
    if ((amount > 0 && total > INT64_MAX - amount) || (amount < 0 && total < INT64_MIN - amount))
        return CRDT_EOVERFLOW;

    crdt_entry ne = new_entry(field, CRDT_COUNTER, &dot);
    ne.pos = pos;
    ne.neg = neg;
    crdt_scope *d = NULL;
    if ((err = crdt_scope_new(s->mem, &d)) != CRDT_OK)
        return err;
    if ((err = crdt__cc_add_upto(&d->cc, &co, dot.counter)) == CRDT_OK
        && (err = delta_put(d, &ne)) == CRDT_OK)
        err = apply(s, delta, d);
    crdt_scope_free(d);
    return err;
}

crdt_err crdt_timeline_add(crdt_scope *s, crdt_scope *delta, const crdt_origin *self,
    const crdt_hlc *hlc, const char *field, const void *content, size_t len, crdt_dot *event)
{
    return write_stamped(s, delta, self, hlc, field, CRDT_TIMELINE, content, len, event);
}

crdt_err crdt_timeline_redact(
    crdt_scope *s, crdt_scope *delta, const char *field, const crdt_dot *event)
{
    crdt_err err = check_common(s, field, NULL, 0);
    if (err != CRDT_OK)
        return err;
    if (event == NULL)
        return CRDT_EINVAL;
    size_t lo, hi;
    if ((err = field_range(s, field, CRDT_TIMELINE, &lo, &hi)) != CRDT_OK)
        return err;
    size_t k = lo;
    while (k < hi && crdt_dot_cmp(&s->e[k].dot, event) != 0)
        k++;
    if (k == hi)
        return CRDT_ENOTFOUND;
    if (s->e[k].redacted)
        return CRDT_OK;
    /* The same dot with the redacted payload: the join makes redaction win (SPEC.md I9). */
    crdt_entry ne = new_entry(field, CRDT_TIMELINE, event);
    ne.hlc = s->e[k].hlc;
    ne.redacted = true;
    crdt_scope *d = NULL;
    if ((err = crdt_scope_new(s->mem, &d)) != CRDT_OK)
        return err;
    if ((err = delta_put(d, &ne)) == CRDT_OK)
        err = apply(s, delta, d);
    crdt_scope_free(d);
    return err;
}

crdt_err crdt_field_remove(crdt_scope *s, crdt_scope *delta, const char *field)
{
    crdt_err err = check_common(s, field, NULL, 0);
    if (err != CRDT_OK)
        return err;
    size_t lo, hi;
    range_of(s, field, NULL, 0, &lo, &hi);
    if (lo == hi)
        return CRDT_ENOTFOUND;
    crdt_scope *d = NULL;
    if ((err = delta_observing(s, lo, hi, &d)) != CRDT_OK)
        return err;
    err = apply(s, delta, d);
    crdt_scope_free(d);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* Reads                                                                                     */

size_t crdt_scope_field_count(const crdt_scope *s)
{
    if (s == NULL)
        return 0;
    size_t n = 0;
    for (size_t k = 0; k < s->n; k++)
        if (k == 0 || !same_field(&s->e[k - 1], &s->e[k]))
            n++;
    return n;
}

crdt_err crdt_scope_field_at(const crdt_scope *s, size_t i, const char **name, crdt_type *type)
{
    if (s == NULL || name == NULL)
        return CRDT_EINVAL;
    size_t n = 0;
    for (size_t k = 0; k < s->n; k++) {
        if (k == 0 || !same_field(&s->e[k - 1], &s->e[k])) {
            if (n++ == i) {
                *name = (const char *)e_field(&s->e[k]);
                if (type != NULL)
                    *type = (crdt_type)s->e[k].type;
                return CRDT_OK;
            }
        }
    }
    return CRDT_ENOTFOUND;
}

crdt_err crdt_scope_field_type(const crdt_scope *s, const char *field, crdt_type *type)
{
    if (s == NULL || type == NULL)
        return CRDT_EINVAL;
    crdt_err err = check_field(field);
    if (err != CRDT_OK)
        return err;
    size_t lo, hi;
    range_of(s, field, NULL, 0, &lo, &hi);
    if (lo == hi)
        return CRDT_ENOTFOUND;
    *type = (crdt_type)s->e[lo].type;
    return CRDT_OK;
}

/* The read range of a field of the given type: CRDT_ENOTFOUND when it holds nothing. */
static crdt_err read_range(
    const crdt_scope *s, const char *field, crdt_type type, size_t *lo, size_t *hi)
{
    if (s == NULL)
        return CRDT_EINVAL;
    crdt_err err = field_range(s, field, type, lo, hi);
    if (err == CRDT_OK && *lo == *hi)
        err = CRDT_ENOTFOUND;
    return err;
}

/* Register order: highest HLC first, then highest origin bytes, then highest counter. */
static int reg_rank_cmp(const entry *a, const entry *b)
{
    int c = crdt_hlc_cmp(&a->hlc, &b->hlc);
    if (c != 0)
        return -c;
    return -crdt_dot_cmp(&a->dot, &b->dot);
}

/* Timeline order: by HLC, then origin, then counter (ascending). */
static int event_rank_cmp(const entry *a, const entry *b)
{
    int c = crdt_hlc_cmp(&a->hlc, &b->hlc);
    if (c != 0)
        return c;
    return crdt_dot_cmp(&a->dot, &b->dot);
}

/* The entry of rank i in [lo, hi) under cmp (entries are distinct under both orders). */
static const entry *nth_by(
    const crdt_scope *s, size_t lo, size_t hi, size_t i, int (*cmp)(const entry *, const entry *))
{
    for (size_t k = lo; k < hi; k++) {
        size_t below = 0;
        for (size_t m = lo; m < hi; m++)
            if (cmp(&s->e[m], &s->e[k]) < 0)
                below++;
        if (below == i)
            return &s->e[k];
    }
    return NULL;
}

/* The number of entries of a field of the given type. */
static crdt_err count_of(const crdt_scope *s, const char *field, crdt_type type, size_t *n)
{
    size_t lo, hi;
    if (n == NULL)
        return CRDT_EINVAL;
    crdt_err err = read_range(s, field, type, &lo, &hi);
    if (err == CRDT_OK)
        *n = hi - lo;
    return err;
}

/* The entry of rank i of a field of the given type, in cmp order. */
static crdt_err ranked(const crdt_scope *s, const char *field, crdt_type type, size_t i,
    int (*cmp)(const entry *, const entry *), const entry **out)
{
    size_t lo, hi;
    crdt_err err = read_range(s, field, type, &lo, &hi);
    if (err != CRDT_OK)
        return err;
    if (i >= hi - lo || (*out = nth_by(s, lo, hi, i, cmp)) == NULL)
        return CRDT_ENOTFOUND;
    return CRDT_OK;
}

crdt_err crdt_register_count(const crdt_scope *s, const char *field, size_t *n)
{
    return count_of(s, field, CRDT_REGISTER, n);
}

crdt_err crdt_register_at(const crdt_scope *s, const char *field, size_t i, crdt_reg_value *out)
{
    const entry *e;
    if (out == NULL)
        return CRDT_EINVAL;
    crdt_err err = ranked(s, field, CRDT_REGISTER, i, reg_rank_cmp, &e);
    if (err != CRDT_OK)
        return err;
    out->value.p = e_value(e);
    out->value.len = e->vlen;
    out->hlc = e->hlc;
    out->dot = e->dot;
    return CRDT_OK;
}

/* Walk a set's distinct members (entries are sorted by element): *count receives how many
 * there are, *out (when want < *count) the member of index want. */
static crdt_err set_walk(
    const crdt_scope *s, const char *field, size_t want, size_t *count, crdt_bytes *out)
{
    size_t lo, hi;
    crdt_err err = read_range(s, field, CRDT_SET, &lo, &hi);
    if (err != CRDT_OK)
        return err;
    size_t c = 0;
    for (size_t k = lo; k < hi; k++) {
        if (k > lo
            && crdt__bytes_cmp(
                   e_elem(&s->e[k - 1]), s->e[k - 1].elen, e_elem(&s->e[k]), s->e[k].elen)
                == 0)
            continue;
        if (c == want && out != NULL) {
            out->p = e_elem(&s->e[k]);
            out->len = s->e[k].elen;
        }
        c++;
    }
    *count = c;
    return CRDT_OK;
}

crdt_err crdt_set_count(const crdt_scope *s, const char *field, size_t *n)
{
    if (n == NULL)
        return CRDT_EINVAL;
    return set_walk(s, field, SIZE_MAX, n, NULL);
}

crdt_err crdt_set_at(const crdt_scope *s, const char *field, size_t i, crdt_bytes *out)
{
    size_t n;
    if (out == NULL)
        return CRDT_EINVAL;
    crdt_err err = set_walk(s, field, i, &n, out);
    if (err == CRDT_OK && i >= n)
        return CRDT_ENOTFOUND;
    return err;
}

bool crdt_set_contains(const crdt_scope *s, const char *field, const void *elem, size_t len)
{
    if (check_common(s, field, elem, len) != CRDT_OK)
        return false;
    size_t lo, hi;
    range_of(s, field, elem ? elem : "", len, &lo, &hi);
    return lo < hi && s->e[lo].type == CRDT_SET;
}

crdt_err crdt_counter_value(const crdt_scope *s, const char *field, int64_t *out)
{
    size_t lo, hi;
    if (out == NULL)
        return CRDT_EINVAL;
    crdt_err err = read_range(s, field, CRDT_COUNTER, &lo, &hi);
    if (err != CRDT_OK)
        return err;
    int64_t sum = 0;
    for (size_t k = lo; k < hi; k++) {
        /* pos, neg <= INT64_MAX (checked on write and on append), so this cannot wrap. */
        int64_t v = (int64_t)s->e[k].pos - (int64_t)s->e[k].neg;
        if ((v > 0 && sum > INT64_MAX - v) || (v < 0 && sum < INT64_MIN - v))
            return CRDT_EOVERFLOW;
        sum += v;
    }
    *out = sum;
    return CRDT_OK;
}

crdt_err crdt_timeline_count(const crdt_scope *s, const char *field, size_t *n)
{
    return count_of(s, field, CRDT_TIMELINE, n);
}

crdt_err crdt_timeline_at(const crdt_scope *s, const char *field, size_t i, crdt_event *out)
{
    const entry *e;
    if (out == NULL)
        return CRDT_EINVAL;
    crdt_err err = ranked(s, field, CRDT_TIMELINE, i, event_rank_cmp, &e);
    if (err != CRDT_OK)
        return err;
    out->id = e->dot;
    out->hlc = e->hlc;
    out->redacted = e->redacted;
    out->content.p = e_value(e);
    out->content.len = e->vlen;
    return CRDT_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Raw entries                                                                               */

size_t crdt_scope_entry_count(const crdt_scope *s)
{
    return s ? s->n : 0;
}

crdt_err crdt_scope_entry_at(const crdt_scope *s, size_t i, crdt_entry *out)
{
    if (s == NULL || out == NULL)
        return CRDT_EINVAL;
    if (i >= s->n)
        return CRDT_ENOTFOUND;
    const entry *e = &s->e[i];
    out->field.p = e_field(e);
    out->field.len = e->flen;
    out->type = (crdt_type)e->type;
    out->elem.p = e_elem(e);
    out->elem.len = e->elen;
    out->dot = e->dot;
    out->hlc = e->hlc;
    out->value.p = e_value(e);
    out->value.len = e->vlen;
    out->pos = e->pos;
    out->neg = e->neg;
    out->redacted = e->redacted;
    return CRDT_OK;
}

/* Whether an entry's payload is well-formed for its type (SPEC.md I7). */
static crdt_err entry_valid(const crdt_entry *e)
{
    if (e->field.len == 0 || e->field.len > CRDT_FIELD_MAX)
        return CRDT_ELIMIT; /* as for the mutators' field names */
    if (e->field.p == NULL)
        return CRDT_EINVAL;
    if (memchr(e->field.p, 0, e->field.len) != NULL)
        return CRDT_EINVAL;
    if (e->elem.len > CRDT_VALUE_MAX || e->value.len > CRDT_VALUE_MAX)
        return CRDT_ELIMIT;
    if ((e->elem.len && e->elem.p == NULL) || (e->value.len && e->value.p == NULL))
        return CRDT_EINVAL;
    if (e->dot.counter == 0 || e->hlc.wall > CRDT_HLC_WALL_MAX)
        return CRDT_EINVAL;
    bool zero_hlc = e->hlc.wall == 0 && e->hlc.logical == 0;
    bool no_counts = e->pos == 0 && e->neg == 0;
    switch (e->type) {
    case CRDT_REGISTER:
        return e->elem.len == 0 && no_counts && !e->redacted ? CRDT_OK : CRDT_EINVAL;
    case CRDT_SET:
        return e->value.len == 0 && zero_hlc && no_counts && !e->redacted ? CRDT_OK : CRDT_EINVAL;
    case CRDT_COUNTER:
        return e->elem.len == 0 && e->value.len == 0 && zero_hlc && !e->redacted
                && e->pos <= (uint64_t)INT64_MAX && e->neg <= (uint64_t)INT64_MAX
            ? CRDT_OK
            : CRDT_EINVAL;
    case CRDT_TIMELINE:
        return e->elem.len == 0 && no_counts && (!e->redacted || e->value.len == 0) ? CRDT_OK
                                                                                    : CRDT_EINVAL;
    }
    return CRDT_EINVAL;
}

crdt_err crdt_scope_append(crdt_scope *s, const crdt_entry *e)
{
    if (s == NULL || e == NULL)
        return CRDT_EINVAL;
    crdt_err err = entry_valid(e);
    if (err != CRDT_OK)
        return err;
    if (s->n >= CRDT_ENTRIES_MAX)
        return CRDT_ELIMIT;
    if (s->n > 0) {
        crdt_entry last;
        if ((err = crdt_scope_entry_at(s, s->n - 1, &last)) != CRDT_OK)
            return err;
        if (crdt_entry_cmp(&last, e) >= 0)
            return CRDT_EORDER;
        if (crdt__bytes_cmp(last.field.p, last.field.len, e->field.p, e->field.len) == 0
            && last.type != e->type)
            return CRDT_EORDER;
    }
    if ((s->cc.nvv > 0 || s->cc.ncloud > 0) && !crdt_cc_contains(&s->cc, &e->dot))
        return CRDT_EORDER;
    if ((err = crdt__reserve(s->mem, (void **)&s->e, &s->cap, s->n + 1, sizeof(*s->e))) != CRDT_OK)
        return err;
    entry ne;
    if ((err = entry_make(s->mem, e->field.p, e->field.len, e->elem.p, e->elem.len, e->value.p,
             e->value.len, &ne))
        != CRDT_OK)
        return err;
    ne.type = (uint8_t)e->type;
    ne.dot = e->dot;
    ne.hlc = e->hlc;
    ne.pos = e->pos;
    ne.neg = e->neg;
    ne.redacted = e->redacted;
    s->e[s->n++] = ne;
    return CRDT_OK;
}

crdt_err crdt_scope_set_cc(crdt_scope *s, const crdt_cc *cc)
{
    if (s == NULL || cc == NULL)
        return CRDT_EINVAL;
    for (size_t k = 0; k < s->n; k++)
        if (!crdt_cc_contains(cc, &s->e[k].dot))
            return CRDT_EORDER;
    return crdt_cc_copy(&s->cc, cc);
}

void crdt_scope_stats(const crdt_scope *s, crdt_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof(*out));
    if (s == NULL)
        return;
    out->entries = s->n;
    out->fields = crdt_scope_field_count(s);
    out->vv_entries = s->cc.nvv;
    out->cloud_dots = s->cc.ncloud;
    for (size_t k = 0; k < s->n; k++)
        out->payload_bytes += s->e[k].flen + s->e[k].elen + s->e[k].vlen;
}
