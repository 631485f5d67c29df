/* Causal contexts: a set of dots kept as a version vector plus a sorted cloud of the dots
 * beyond it. Every change builds the new arrays first and swaps them in, so a failed
 * allocation leaves the context as it was, and the result is always canonical (SPEC.md, I4). */
#include "internal.h"

#include <string.h>

int crdt_origin_cmp(const crdt_origin *a, const crdt_origin *b)
{
    return memcmp(a->b, b->b, CRDT_ORIGIN_LEN);
}

int crdt_dot_cmp(const crdt_dot *a, const crdt_dot *b)
{
    int c = crdt_origin_cmp(&a->origin, &b->origin);
    if (c != 0)
        return c;
    return (a->counter > b->counter) - (a->counter < b->counter);
}

void crdt_cc_init(crdt_cc *cc, const crdt_mem *mem)
{
    memset(cc, 0, sizeof(*cc));
    cc->mem = mem ? mem : crdt_mem_default();
}

void crdt_cc_fini(crdt_cc *cc)
{
    crdt__free(cc->mem, cc->vv);
    crdt__free(cc->mem, cc->cloud);
    const crdt_mem *mem = cc->mem;
    crdt_cc_init(cc, mem);
}

/* Index of origin in the vector, or of where it would go; *found says which. */
static size_t vv_find(const crdt_cc *cc, const crdt_origin *origin, bool *found)
{
    size_t lo = 0, hi = cc->nvv;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = crdt_origin_cmp(&cc->vv[mid].origin, origin);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

static bool cloud_has(const crdt_cc *cc, const crdt_dot *dot)
{
    size_t lo = 0, hi = cc->ncloud;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = crdt_dot_cmp(&cc->cloud[mid], dot);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

uint64_t crdt_cc_vv_max(const crdt_cc *cc, const crdt_origin *origin)
{
    bool found;
    size_t i = vv_find(cc, origin, &found);
    return found ? cc->vv[i].max : 0;
}

uint64_t crdt_cc_max(const crdt_cc *cc, const crdt_origin *origin)
{
    uint64_t m = crdt_cc_vv_max(cc, origin);
    /* The cloud is sorted by (origin, counter): find the last dot of origin. */
    size_t lo = 0, hi = cc->ncloud;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (crdt_origin_cmp(&cc->cloud[mid].origin, origin) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo > 0 && crdt_origin_cmp(&cc->cloud[lo - 1].origin, origin) == 0
        && cc->cloud[lo - 1].counter > m)
        m = cc->cloud[lo - 1].counter;
    return m;
}

bool crdt_cc_contains(const crdt_cc *cc, const crdt_dot *dot)
{
    if (dot->counter == 0)
        return false;
    if (dot->counter <= crdt_cc_vv_max(cc, &dot->origin))
        return true;
    return cloud_has(cc, dot);
}

/*
 * Build the canonical context of the union of (vva, cla) and (vvb, clb) into dst, replacing
 * what dst held only on success. Inputs are sorted; the clouds may hold dots the vectors
 * already cover, and the two clouds may share dots.
 */
static crdt_err cc_union(crdt_cc *dst, const crdt_vv_entry *vva, size_t na, const crdt_dot *cla,
    size_t nca, const crdt_vv_entry *vvb, size_t nb, const crdt_dot *clb, size_t ncb)
{
    const crdt_mem *mem = dst->mem;
    crdt_err err = CRDT_ENOMEM;
    crdt_vv_entry *vv = NULL, *outvv = NULL;
    crdt_dot *cloud = NULL, *outcloud = NULL;
    size_t nvv = 0, ncloud = 0, noutvv = 0, noutcloud = 0;

    if (na + nb > 0 && (vv = crdt__alloc_array(mem, na + nb, sizeof(*vv))) == NULL)
        goto fail;
    if (nca + ncb > 0 && (cloud = crdt__alloc_array(mem, nca + ncb, sizeof(*cloud))) == NULL)
        goto fail;
    if (na + nb + nca + ncb > 0
        && (outvv = crdt__alloc_array(mem, na + nb + nca + ncb, sizeof(*outvv))) == NULL)
        goto fail;
    if (nca + ncb > 0 && (outcloud = crdt__alloc_array(mem, nca + ncb, sizeof(*outcloud))) == NULL)
        goto fail;

    /* Merge the vectors, taking the larger maximum of an origin in both. */
    for (size_t i = 0, j = 0; i < na || j < nb;) {
        int c = i == na ? 1 : j == nb ? -1 : crdt_origin_cmp(&vva[i].origin, &vvb[j].origin);
        if (c < 0) {
            vv[nvv++] = vva[i++];
        } else if (c > 0) {
            vv[nvv++] = vvb[j++];
        } else {
            vv[nvv] = vva[i];
            if (vvb[j].max > vv[nvv].max)
                vv[nvv].max = vvb[j].max;
            nvv++, i++, j++;
        }
    }
    /* Merge the clouds, once each dot. */
    for (size_t i = 0, j = 0; i < nca || j < ncb;) {
        int c = i == nca ? 1 : j == ncb ? -1 : crdt_dot_cmp(&cla[i], &clb[j]);
        if (c < 0) {
            cloud[ncloud++] = cla[i++];
        } else if (c > 0) {
            cloud[ncloud++] = clb[j++];
        } else {
            cloud[ncloud++] = cla[i++];
            j++;
        }
    }
    /* Normalise origin by origin: cloud dots the vector covers go, a dot right after the
     * vector's maximum extends it, the rest stay in the cloud. */
    for (size_t i = 0, j = 0; i < nvv || j < ncloud;) {
        const crdt_origin *o;
        if (i == nvv)
            o = &cloud[j].origin;
        else if (j == ncloud)
            o = &vv[i].origin;
        else
            o = crdt_origin_cmp(&vv[i].origin, &cloud[j].origin) <= 0 ? &vv[i].origin
                                                                      : &cloud[j].origin;
        crdt_origin origin = *o;
        uint64_t m = 0;
        if (i < nvv && crdt_origin_cmp(&vv[i].origin, &origin) == 0)
            m = vv[i++].max;
        for (; j < ncloud && crdt_origin_cmp(&cloud[j].origin, &origin) == 0; j++) {
            uint64_t c = cloud[j].counter;
            if (c <= m)
                continue;
            if (c == m + 1)
                m = c;
            else
                outcloud[noutcloud++] = cloud[j];
        }
        if (m > 0) {
            outvv[noutvv].origin = origin;
            outvv[noutvv].max = m;
            noutvv++;
        }
    }

    crdt__free(mem, vv);
    crdt__free(mem, cloud);
    crdt__free(mem, dst->vv);
    crdt__free(mem, dst->cloud);
    dst->vv = outvv;
    dst->nvv = noutvv;
    dst->capvv = outvv ? na + nb + nca + ncb : 0;
    dst->cloud = outcloud;
    dst->ncloud = noutcloud;
    dst->capcloud = outcloud ? nca + ncb : 0;
    return CRDT_OK;

fail:
    crdt__free(mem, vv);
    crdt__free(mem, cloud);
    crdt__free(mem, outvv);
    crdt__free(mem, outcloud);
    return err;
}

crdt_err crdt_cc_add(crdt_cc *cc, const crdt_dot *dot)
{
    if (cc == NULL || dot == NULL || dot->counter == 0)
        return CRDT_EINVAL;
    if (crdt_cc_contains(cc, dot))
        return CRDT_OK;
    bool found;
    size_t i = vv_find(cc, &dot->origin, &found);
    uint64_t m = found ? cc->vv[i].max : 0;
    /* Common case: the next dot of an origin with nothing in the cloud extends the vector. */
    if (dot->counter == m + 1 && crdt_cc_max(cc, &dot->origin) == m) {
        if (found) {
            cc->vv[i].max = dot->counter;
            return CRDT_OK;
        }
        crdt_err err
            = crdt__reserve(cc->mem, (void **)&cc->vv, &cc->capvv, cc->nvv + 1, sizeof(*cc->vv));
        if (err != CRDT_OK)
            return err;
        memmove(&cc->vv[i + 1], &cc->vv[i], (cc->nvv - i) * sizeof(*cc->vv));
        cc->vv[i].origin = dot->origin;
        cc->vv[i].max = dot->counter;
        cc->nvv++;
        return CRDT_OK;
    }
    return cc_union(cc, cc->vv, cc->nvv, cc->cloud, cc->ncloud, NULL, 0, dot, 1);
}

crdt_err crdt__cc_add_upto(crdt_cc *cc, const crdt_origin *origin, uint64_t max)
{
    if (max == 0 || crdt_cc_vv_max(cc, origin) >= max)
        return CRDT_OK;
    crdt_vv_entry one = { *origin, max };
    return cc_union(cc, cc->vv, cc->nvv, cc->cloud, cc->ncloud, &one, 1, NULL, 0);
}

crdt_err crdt_cc_join(crdt_cc *dst, const crdt_cc *src)
{
    if (dst == NULL || src == NULL)
        return CRDT_EINVAL;
    if (dst == src || (src->nvv == 0 && src->ncloud == 0))
        return CRDT_OK;
    return cc_union(dst, dst->vv, dst->nvv, dst->cloud, dst->ncloud, src->vv, src->nvv, src->cloud,
        src->ncloud);
}

crdt_err crdt_cc_copy(crdt_cc *dst, const crdt_cc *src)
{
    if (dst == NULL || src == NULL)
        return CRDT_EINVAL;
    if (dst == src)
        return CRDT_OK;
    return cc_union(dst, src->vv, src->nvv, src->cloud, src->ncloud, NULL, 0, NULL, 0);
}

bool crdt_cc_includes(const crdt_cc *a, const crdt_cc *b)
{
    /* a is canonical, so (o, vv_max(a, o) + 1) is not in a: b's vector entry is covered only
     * by a's vector. */
    for (size_t i = 0; i < b->nvv; i++)
        if (crdt_cc_vv_max(a, &b->vv[i].origin) < b->vv[i].max)
            return false;
    for (size_t i = 0; i < b->ncloud; i++)
        if (!crdt_cc_contains(a, &b->cloud[i]))
            return false;
    return true;
}

bool crdt_cc_equal(const crdt_cc *a, const crdt_cc *b)
{
    if (a->nvv != b->nvv || a->ncloud != b->ncloud)
        return false;
    for (size_t i = 0; i < a->nvv; i++)
        if (crdt_origin_cmp(&a->vv[i].origin, &b->vv[i].origin) != 0
            || a->vv[i].max != b->vv[i].max)
            return false;
    for (size_t i = 0; i < a->ncloud; i++)
        if (crdt_dot_cmp(&a->cloud[i], &b->cloud[i]) != 0)
            return false;
    return true;
}
