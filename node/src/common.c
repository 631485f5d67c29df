/* Errors (node_strerror, node__fail) and the bounded vectors of node/ (node__vec_reserve).
 * May call: libc only. */
#include "internal.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static const char *const node__messages[] = {
#define NODE__TEXT(name, text) text,
    NODE_ERRORS(NODE__TEXT)
#undef NODE__TEXT
};

const char *node_strerror(node_err err)
{
    if ((unsigned)err >= (unsigned)NODE_ERR_COUNT)
        return "unknown node error";
    return node__messages[err];
}

node_err node__fail(node_errmsg *msg, node_err err, const char *fmt, ...)
{
    if (msg != NULL) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg->text, sizeof(msg->text), fmt, ap);
        va_end(ap);
    }
    return err;
}

node_err node__vec_reserve(void *field, size_t *cap, size_t need, size_t size, size_t max)
{
    if (need <= *cap)
        return NODE_OK;
    if (need > max)
        return NODE_EFULL;
    size_t next = *cap < NODE_VEC_MIN ? NODE_VEC_MIN : *cap;
    while (next < need)
        next = next > SIZE_MAX / 2 ? SIZE_MAX : next * 2;
    if (next > max)
        next = max;
    if (next > SIZE_MAX / size)
        return NODE_ENOMEM;
    /* The element pointer is read and written as bytes: field points at a T *, not a void *. */
    void *old;
    memcpy(&old, field, sizeof(old));
    void *grown = realloc(old, next * size);
    if (grown == NULL)
        return NODE_ENOMEM;
    memcpy(field, &grown, sizeof(grown));
    *cap = next;
    return NODE_OK;
}
