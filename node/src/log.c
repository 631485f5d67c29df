/* key=value log lines on stderr, and the rate limits of lines a peer could repeat without end.
 * One fprintf per line, so lines from several threads do not interleave (stdio locks the
 * stream for each call). May call: libc only. */
#include "internal.h"

#include <string.h>
#include <time.h>

static node_log_level log_level = NODE_LOG_INFO;
static FILE *log_out;

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void node_log_set_level(node_log_level level)
{
    log_level = level;
}

void node_log_set_output(FILE *out)
{
    log_out = out;
}

node_err node_log_level_parse(const char *text, node_log_level *out)
{
    if (text == NULL || out == NULL)
        return NODE_EINVAL;
    for (int i = 0; i <= NODE_LOG_DEBUG; i++) {
        if (strcmp(text, level_names[i]) == 0) {
            *out = (node_log_level)i;
            return NODE_OK;
        }
    }
    return NODE_EINVAL;
}

void node_log(node_log_level level, const char *event, const char *fmt, ...)
{
    if (level > log_level || (unsigned)level > NODE_LOG_DEBUG)
        return;
    struct timespec ts;
    struct tm tm;
    char when[32] = "1970-01-01T00:00:00.000Z";
    if (clock_gettime(CLOCK_REALTIME, &ts) == 0 && gmtime_r(&ts.tv_sec, &tm) != NULL) {
        size_t n = strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(when + n, sizeof(when) - n, ".%03ldZ", ts.tv_nsec / 1000000L);
    }
    char raw[1024], rest[4 * sizeof(raw)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof(raw), fmt, ap);
    va_end(ap);
    /* A line is one line: whatever a value holds, no control character reaches the log (a
     * newline would start a forged line; an escape sequence would paint a terminal). */
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)raw; *p != 0; p++) {
        if (*p < 0x20 || *p == 0x7f)
            o += (size_t)snprintf(rest + o, sizeof(rest) - o, "\\x%02x", *p);
        else
            rest[o++] = (char)*p;
    }
    rest[o] = 0;
    fprintf(log_out ? log_out : stderr, "ts=%s level=%s event=%s%s%s\n", when, level_names[level],
        event, rest[0] ? " " : "", rest);
}

const char *node__logq(const char *s)
{
    static _Thread_local char bufs[4][NODE_LOGQ_MAX * 4 + 4];
    static _Thread_local unsigned next;
    char *b = bufs[next++ % 4];
    size_t o = 0, n = 0;
    for (const unsigned char *p = (const unsigned char *)(s ? s : ""); *p != 0; p++, n++) {
        if (n == NODE_LOGQ_MAX) {
            memcpy(b + o, "...", 3);
            o += 3;
            break;
        }
        if (*p == '"' || *p == '\\') {
            b[o++] = '\\';
            b[o++] = (char)*p;
        } else if (*p < 0x20 || *p == 0x7f) {
            o += (size_t)snprintf(b + o, 5, "\\x%02x", *p);
        } else {
            b[o++] = (char)*p;
        }
    }
    b[o] = 0;
    return b;
}

/* ---------------------------------------------------------------------------------------- */
/* Rate limits                                                                               */

bool node__loglimit_pass(node_loglimit *l, const char *key, uint64_t now_ms, uint64_t *held)
{
    node_loglimit_slot *s = NULL, *oldest = &l->slot[0];
    for (size_t i = 0; i < NODE_LOGLIMIT_KEYS && s == NULL; i++) {
        node_loglimit_slot *x = &l->slot[i];
        if (x->seen_ms != 0 && strcmp(x->key, key) == 0)
            s = x;
        else if (x->seen_ms < oldest->seen_ms)
            oldest = x;
    }
    if (s != NULL && now_ms - s->seen_ms >= NODE_LOGLIMIT_MAX_MS)
        s->interval_ms = 0; /* quiet for the longest interval: start afresh */
    if (s == NULL) {
        s = oldest; /* a free slot (seen_ms 0), or the key seen least recently */
        memset(s, 0, sizeof(*s));
        snprintf(s->key, sizeof(s->key), "%s", key);
    }
    s->seen_ms = now_ms;
    if (s->interval_ms != 0 && now_ms < s->next_ms) {
        s->held++;
        return false;
    }
    *held = s->held;
    s->held = 0;
    s->interval_ms = s->interval_ms == 0            ? NODE_LOGLIMIT_MIN_MS
        : s->interval_ms * 2 > NODE_LOGLIMIT_MAX_MS ? NODE_LOGLIMIT_MAX_MS
                                                    : s->interval_ms * 2;
    s->next_ms = now_ms + s->interval_ms;
    return true;
}
