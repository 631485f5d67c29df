#include "internal.h"

#include <stdio.h>

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
