/*
 * names.c - the one definition of every rule for names and values that more than one program
 * checks: org ids, scope names, URLs, text for people, roles, legal bases and access levels
 * (PROTOCOL.md, "Names and values"). The CLI checks input with these before it
 * asks its node, the node checks the same input again on its control socket and in its
 * configuration, and the decoders check what arrives from peers.
 */
#include "internal.h"

#include <string.h>

static bool in_alphabet(const char *p, size_t n, size_t max, const char *extra)
{
    if (p == NULL || n == 0 || n > max)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))
            continue;
        if (c != 0 && strchr(extra, c) != NULL)
            continue;
        return false;
    }
    return true;
}

bool proto_org_valid(const char *s, size_t len)
{
    return in_alphabet(s, len, PROTO_ORG_MAX, "-");
}

bool proto_scope_name_valid(const char *s, size_t len)
{
    return in_alphabet(s, len, PROTO_SCOPE_NAME_MAX, "_-");
}

bool proto__valid_org(const uint8_t *p, size_t n)
{
    return proto_org_valid((const char *)p, n);
}

bool proto__valid_scope(const uint8_t *p, size_t n)
{
    return proto_scope_name_valid((const char *)p, n);
}

bool proto__valid_command(const uint8_t *p, size_t n)
{
    return in_alphabet((const char *)p, n, 64, "._-");
}

bool proto__valid_text(const uint8_t *p, size_t n)
{
    if (n > PROTO_TEXT_MAX)
        return false;
    return n == 0 || memchr(p, 0, n) == NULL;
}

static bool digits(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool host_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-'
        || c == '.';
}

static bool hex_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool proto_url_valid(const char *s, size_t len)
{
    static const char prefix[] = "tcp://";
    const size_t pl = sizeof prefix - 1;
    if (s == NULL || len <= pl || len > PROTO_URL_MAX || memcmp(s, prefix, pl) != 0)
        return false;
    const char *host = s + pl, *end = s + len, *colon;
    if (host[0] == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (close == NULL || close == host + 1 || close + 1 >= end || close[1] != ':')
            return false;
        for (const char *p = host + 1; p < close; p++)
            if (!hex_char(*p) && *p != ':' && *p != '.')
                return false;
        colon = close + 1;
    } else {
        colon = NULL;
        for (const char *p = host; p < end; p++)
            if (*p == ':')
                colon = p;
        if (colon == NULL || colon == host)
            return false;
        for (const char *p = host; p < colon; p++)
            if (!host_char(*p))
                return false;
    }
    const char *port = colon + 1;
    size_t n = (size_t)(end - port);
    if (n > 5 || !digits(port, n))
        return false;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++)
        v = v * 10 + (unsigned)(port[i] - '0');
    return v >= 1 && v <= 65535;
}

bool proto_url_wildcard(const char *s, size_t len)
{
    static const char *const any[] = { "tcp://0.0.0.0:", "tcp://[::]:" };
    if (s == NULL)
        return false;
    for (size_t i = 0; i < sizeof(any) / sizeof(any[0]); i++) {
        size_t n = strlen(any[i]);
        if (len > n && memcmp(s, any[i], n) == 0)
            return true;
    }
    return false;
}

bool proto_utf8_valid(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        unsigned c = u[i];
        if (c < 0x20 || c == 0x7f)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        unsigned cp;
        if (c >= 0xc2 && c <= 0xdf)
            n = 2, cp = c & 0x1f;
        else if (c >= 0xe0 && c <= 0xef)
            n = 3, cp = c & 0x0f;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 4, cp = c & 0x07;
        else
            return false;
        if (i + n > len)
            return false;
        for (size_t k = 1; k < n; k++) {
            if ((u[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (u[i + k] & 0x3f);
        }
        /* overlong forms, surrogates, beyond U+10FFFF, and the C1 control characters */
        if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
            || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0x80 && cp <= 0x9f))
            return false;
        i += n;
    }
    return true;
}

bool proto_text_valid(const char *s, size_t len, size_t max)
{
    if (s == NULL || len == 0 || len > max || !proto_utf8_valid(s, len))
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ')
            return true;
    return false; /* only spaces: as empty as an empty value */
}

bool proto__text(const uint8_t *p, size_t n)
{
    return proto_text_valid((const char *)p, n, PROTO_TEXT_MAX);
}

bool proto__text_or_empty(const uint8_t *p, size_t n)
{
    return n == 0 || proto__text(p, n);
}

bool proto__valid_unix_user(const uint8_t *p, size_t n)
{
    if (n > PROTO__UNIX_USER_MAX || (n > 0 && p == NULL))
        return false;
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e)
            return false;
    return true;
}

static const char *const role_names[]
    = { NULL, "comune", "cpia", "cpi", "prefettura", "coop", "coord" };
static const char *const basis_names[]
    = { NULL, "public-task", "legal-obligation", "consent", "explicit-consent" };
static const char *const access_names[] = { "none", "read", "write" };

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static unsigned name_parse(const char *const *names, size_t n, const char *s, size_t len)
{
    for (size_t i = 0; s != NULL && i < n; i++)
        if (names[i] != NULL && strlen(names[i]) == len && memcmp(names[i], s, len) == 0)
            return (unsigned)i;
    return n; /* not found */
}

const char *proto_role_name(unsigned role)
{
    return role < COUNT(role_names) ? role_names[role] : NULL;
}

unsigned proto_role_parse(const char *s, size_t len)
{
    unsigned r = name_parse(role_names, COUNT(role_names), s, len);
    return r < COUNT(role_names) ? r : 0;
}

const char *proto_basis_name(unsigned basis)
{
    return basis < COUNT(basis_names) ? basis_names[basis] : NULL;
}

unsigned proto_basis_parse(const char *s, size_t len)
{
    unsigned b = name_parse(basis_names, COUNT(basis_names), s, len);
    return b < COUNT(basis_names) ? b : 0;
}

const char *proto_access_name(unsigned access)
{
    return access < COUNT(access_names) ? access_names[access] : NULL;
}

bool proto_access_parse(const char *s, size_t len, uint8_t *out)
{
    unsigned a = name_parse(access_names, COUNT(access_names), s, len);
    if (a >= COUNT(access_names))
        return false;
    *out = (uint8_t)a;
    return true;
}
