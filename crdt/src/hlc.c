/* Hybrid logical clocks (Kulkarni et al. 2014), with the logical part's overflow carried
 * into the physical part so that timestamps stay strictly increasing (SPEC.md, I3). */
#include "internal.h"

int crdt_hlc_cmp(const crdt_hlc *a, const crdt_hlc *b)
{
    if (a->wall != b->wall)
        return a->wall < b->wall ? -1 : 1;
    return (a->logical > b->logical) - (a->logical < b->logical);
}

/* The timestamp following (wall, logical + 1), carrying an overflow into wall. */
static crdt_err hlc_tick(uint64_t wall, uint32_t next_logical, crdt_hlc *out)
{
    if (next_logical > CRDT_HLC_LOGICAL_MAX) {
        if (wall >= CRDT_HLC_WALL_MAX)
            return CRDT_ECLOCK;
        wall += 1;
        next_logical = 0;
    }
    out->wall = wall;
    out->logical = (uint16_t)next_logical;
    return CRDT_OK;
}

crdt_err crdt_hlc_send(crdt_hlc *clock, uint64_t now_ms, crdt_hlc *out)
{
    if (clock == NULL || out == NULL)
        return CRDT_EINVAL;
    if (now_ms > CRDT_HLC_WALL_MAX || clock->wall > CRDT_HLC_WALL_MAX)
        return CRDT_ECLOCK;
    crdt_hlc next;
    if (now_ms > clock->wall) {
        next.wall = now_ms;
        next.logical = 0;
    } else {
        crdt_err err = hlc_tick(clock->wall, (uint32_t)clock->logical + 1, &next);
        if (err != CRDT_OK)
            return err;
    }
    *clock = next;
    *out = next;
    return CRDT_OK;
}

crdt_err crdt_hlc_recv(
    crdt_hlc *clock, uint64_t now_ms, const crdt_hlc *remote, uint64_t max_ahead_ms, crdt_hlc *out)
{
    if (clock == NULL || remote == NULL)
        return CRDT_EINVAL;
    if (now_ms > CRDT_HLC_WALL_MAX || clock->wall > CRDT_HLC_WALL_MAX
        || remote->wall > CRDT_HLC_WALL_MAX)
        return CRDT_ECLOCK;
    if (remote->wall > now_ms && remote->wall - now_ms > max_ahead_ms)
        return CRDT_EAHEAD;

    uint64_t wall = clock->wall;
    if (remote->wall > wall)
        wall = remote->wall;
    if (now_ms > wall)
        wall = now_ms;

    crdt_hlc next;
    crdt_err err = CRDT_OK;
    if (wall == clock->wall && wall == remote->wall) {
        uint32_t l = clock->logical > remote->logical ? clock->logical : remote->logical;
        err = hlc_tick(wall, l + 1, &next);
    } else if (wall == clock->wall) {
        err = hlc_tick(wall, (uint32_t)clock->logical + 1, &next);
    } else if (wall == remote->wall) {
        err = hlc_tick(wall, (uint32_t)remote->logical + 1, &next);
    } else {
        next.wall = wall;
        next.logical = 0;
    }
    if (err != CRDT_OK)
        return err;
    *clock = next;
    if (out != NULL)
        *out = next;
    return CRDT_OK;
}
