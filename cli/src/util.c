/* util.c - error reporting, option parsing, files, JSON and times for people, for the CLI. */
#define _DEFAULT_SOURCE /* timegm */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                    */

const char *cli_strerror(int err)
{
    switch (err) {
#define CLI__CASE(name, num, text)                                                                 \
    case num:                                                                                      \
        return text;
        CLI_ERRORS(CLI__CASE)
#undef CLI__CASE
    default:
        return "unknown error";
    }
}

cli_err cli__fail(cli__ctx *ctx, cli_err code, const char *fmt, ...)
{
    if (ctx->err != CLI_OK)
        return code;
    ctx->err = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->msg, sizeof ctx->msg, fmt, ap);
    va_end(ap);
    return code;
}

cli_err cli__usage(cli__ctx *ctx, const cli__cmd *cmd, const char *fmt, ...)
{
    char what[CLI__MSG_MAX / 2];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return cli__fail(ctx, CLI_EUSAGE, _("%s; usage: patto %s%s%s"), what, cmd->name,
        cmd->args[0] != '\0' ? " " : "", cmd->args);
}

cli_err cli__parse_u64(cli__ctx *ctx, const cli__cmd *cmd, const char *name, const char *text,
    uint64_t min, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    bool ok = text[0] != '\0';
    for (const char *p = text; ok && *p != '\0'; p++) {
        unsigned d = (unsigned)(*p - '0');
        ok = *p >= '0' && *p <= '9' && v <= (UINT64_MAX - d) / 10;
        v = ok ? v * 10 + d : v;
    }
    if (!ok || v < min || v > max)
        return cli__usage(ctx, cmd,
            _("--%s '%s' is not a whole number from %" PRIu64 " to %" PRIu64), name, text, min,
            max);
    *out = v;
    return CLI_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Times for people                                                                          */

static bool digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* Two digits (checked by digits) as a number. */
static int two(const char *s)
{
    return (s[0] - '0') * 10 + (s[1] - '0');
}

bool cli_rome_time(const char *utc, char *out, size_t n)
{
    /* YYYY-MM-DDTHH:MM:SS, an optional fraction, Z: how the node writes times (CONTROL.md). */
    size_t len = utc != NULL ? strlen(utc) : 0;
    proto_date d;
    if (len < 20 || proto_date_parse(utc, 10, &d) != PROTO_OK || utc[10] != 'T' || utc[13] != ':'
        || utc[16] != ':' || utc[len - 1] != 'Z' || !digits(utc + 11, 2) || !digits(utc + 14, 2)
        || !digits(utc + 17, 2))
        return false;
    if (len != 20 && (utc[19] != '.' || len < 22 || !digits(utc + 20, len - 21)))
        return false;
    struct tm tm = { .tm_year = d.year - 1900,
        .tm_mon = d.month - 1,
        .tm_mday = d.day,
        .tm_hour = two(utc + 11),
        .tm_min = two(utc + 14),
        .tm_sec = two(utc + 17) };
    if (tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 59)
        return false;
    time_t t = timegm(&tm);
    if (t < 0)
        return false;
    return cli_rome_time_ms((uint64_t)t * 1000, out, n); /* whole seconds are enough for people */
}

bool cli_rome_time_ms(uint64_t utc_ms, char *out, size_t n)
{
    proto_civil c;
    proto_rome_civil(utc_ms, &c);
    char text[CLI_TIME_TEXT_SIZE];
    int w = snprintf(text, sizeof text, "%04d-%02d-%02d %02d:%02d:%02d %s", c.year, c.month, c.day,
        c.hour, c.minute, c.second, c.offset_min == 120 ? "CEST" : "CET");
    if (w < 0 || (size_t)w >= n)
        return false;
    memcpy(out, text, (size_t)w + 1);
    return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Options                                                                                   */

static const cli__opt *find_opt(const cli__opt *opts, size_t nopts, const char *name, size_t len)
{
    for (size_t i = 0; i < nopts; i++)
        if (strlen(opts[i].name) == len && strncmp(opts[i].name, name, len) == 0)
            return &opts[i];
    return NULL;
}

cli_err cli__parse(cli__ctx *ctx, const cli__cmd *cmd, int argc, char **argv, const cli__opt *opts,
    size_t nopts, const char **pos, size_t minpos, size_t maxpos, size_t *npos)
{
    size_t n = 0;
    bool options = true;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (options && strcmp(a, "--") == 0) {
            options = false;
            continue;
        }
        if (options && a[0] == '-' && a[1] != '\0') {
            if (a[1] != '-')
                return cli__usage(ctx, cmd, _("unknown option '%s'"), a);
            const char *name = a + 2;
            const char *eq = strchr(name, '=');
            size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
            const cli__opt *o = find_opt(opts, nopts, name, len);
            if (o == NULL)
                return cli__usage(ctx, cmd, _("unknown option '--%.*s'"), (int)len, name);
            if (o->flag != NULL) {
                if (eq != NULL)
                    return cli__usage(ctx, cmd, _("option '--%s' takes no value"), o->name);
                *o->flag = true;
                continue;
            }
            const char *v;
            if (eq != NULL) {
                v = eq + 1;
            } else {
                if (i + 1 >= argc)
                    return cli__usage(ctx, cmd, _("option '--%s' needs a value"), o->name);
                v = argv[++i];
            }
            if (*o->value != NULL)
                return cli__usage(ctx, cmd, _("option '--%s' given twice"), o->name);
            *o->value = v;
            continue;
        }
        if (n >= maxpos)
            return cli__usage(ctx, cmd, _("unexpected argument '%s'"), a);
        pos[n++] = a;
    }
    if (n < minpos)
        return cli__usage(ctx, cmd, _("missing argument"));
    *npos = n;
    return CLI_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* Files                                                                                     */

bool cli__exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void dir_of(const char *path, char *out, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (slash == NULL) {
        snprintf(out, n, ".");
    } else if (slash == path) {
        snprintf(out, n, "/");
    } else {
        snprintf(out, n, "%.*s", (int)(slash - path), path);
    }
}

bool cli__inside(const char *path, const char *const *marks, size_t nmarks, char *dir, size_t n,
    const char **mark)
{
    char at[PATH_MAX];
    if (realpath(path, at) == NULL) {
        /* Not there yet: its parent is (or creating it fails later, saying why). */
        char parent[PATH_MAX];
        dir_of(path, parent, sizeof parent);
        if (realpath(parent, at) == NULL)
            return false;
    }
    for (;;) {
        for (size_t i = 0; i < nmarks; i++) {
            char file[PATH_MAX + 64];
            int w = snprintf(file, sizeof file, "%s/%s", at, marks[i]);
            if (w > 0 && (size_t)w < sizeof file && cli__exists(file)) {
                snprintf(dir, n, "%s", at);
                *mark = marks[i];
                return true;
            }
        }
        char *slash = strrchr(at, '/');
        if (slash == NULL || slash == at)
            return false; /* the root directory holds neither */
        *slash = '\0';
    }
}

cli_err cli__path(cli__ctx *ctx, char *out, size_t n, const char *dir, const char *name)
{
    int w = snprintf(out, n, "%s/%s", dir, name);
    if (w < 0 || (size_t)w >= n)
        return cli__fail(ctx, CLI_EINPUT, _("path too long: %s/%s"), dir, name);
    return CLI_OK;
}

cli_err cli__read_file(cli__ctx *ctx, const char *path, size_t max, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return cli__fail(ctx, CLI_ENOTFOUND, _("cannot read %s: %s"), path, strerror(errno));
    cli_err err = CLI_OK;
    uint8_t *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        err = cli__fail(ctx, CLI_ENOTFOUND, _("cannot read %s: %s"), path, strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        err = cli__fail(ctx, CLI_ENOTFOUND, _("cannot read %s: not a regular file"), path);
        goto fail;
    }
    if ((uintmax_t)st.st_size > max) {
        err = cli__fail(ctx, CLI_EINPUT, _("%s is too large (%jd bytes; at most %zu)"), path,
            (intmax_t)st.st_size, max);
        goto fail;
    }
    size_t cap = (size_t)st.st_size;
    buf = malloc(cap + 1);
    if (buf == NULL) {
        err = cli__fail(ctx, CLI_EINTERNAL, _("out of memory reading %s"), path);
        goto fail;
    }
    size_t got = 0;
    while (got < cap) {
        ssize_t r = read(fd, buf + got, cap - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = cli__fail(ctx, CLI_ENOTFOUND, _("cannot read %s: %s"), path, strerror(errno));
            goto fail;
        }
        if (r == 0)
            break; /* the file shrank while we read it: take what is there */
        got += (size_t)r;
    }
    buf[got] = '\0';
    close(fd);
    *out = buf;
    *len = got;
    return CLI_OK;
fail:
    free(buf);
    close(fd);
    return err;
}

cli_err cli__write_file(
    cli__ctx *ctx, const char *path, const void *data, size_t len, mode_t mode, bool exclusive)
{
    char tmp[PATH_MAX];
    int w = snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path);
    if (w < 0 || (size_t)w >= sizeof tmp)
        return cli__fail(ctx, CLI_EINPUT, _("path too long: %s"), path);
    int fd = mkstemp(tmp); /* mode 0600 until the fchmod below: never wider than asked */
    if (fd < 0)
        return cli__fail(ctx, CLI_EINPUT, _("cannot write %s: %s"), path, strerror(errno));
    cli_err err = CLI_OK;
    if (fchmod(fd, mode) != 0) {
        err = cli__fail(
            ctx, CLI_EINTERNAL, _("cannot set the mode of %s: %s"), tmp, strerror(errno));
        goto fail;
    }
    const uint8_t *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t r = write(fd, p + done, len - done);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            err = cli__fail(ctx, CLI_EINTERNAL, _("cannot write %s: %s"), tmp, strerror(errno));
            goto fail;
        }
        done += (size_t)r;
    }
    if (fsync(fd) != 0) {
        err = cli__fail(ctx, CLI_EINTERNAL, _("cannot write %s: %s"), tmp, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        err = cli__fail(ctx, CLI_EINTERNAL, _("cannot write %s: %s"), tmp, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (exclusive) {
        /* link() refuses an existing target, so two concurrent inits cannot both win. */
        if (link(tmp, path) != 0) {
            err = errno == EEXIST
                ? cli__fail(ctx, CLI_EINPUT, _("%s already exists; refusing to overwrite it"), path)
                : cli__fail(ctx, CLI_EINPUT, _("cannot create %s: %s"), path, strerror(errno));
            goto fail;
        }
        unlink(tmp);
    } else if (rename(tmp, path) != 0) {
        err = cli__fail(ctx, CLI_EINPUT, _("cannot write %s: %s"), path, strerror(errno));
        goto fail;
    }
    char dir[PATH_MAX];
    dir_of(path, dir, sizeof dir);
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        (void)fsync(dfd); /* best effort: some file systems refuse fsync on directories */
        close(dfd);
    }
    return CLI_OK;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
    return err;
}

/* ---------------------------------------------------------------------------------------- */
/* JSON                                                                                      */

cli_err cli__json_parse(
    cli__ctx *ctx, const char *what, const char *text, size_t len, json_object **out)
{
    *out = NULL;
    if (len > INT_MAX)
        return cli__fail(ctx, CLI_EINPUT, _("%s is too large to be read as JSON"), what);
    json_tokener *tok = json_tokener_new();
    if (tok == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory reading %s"), what);
    json_object *obj = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (obj == NULL || jerr != json_tokener_success) {
        json_object_put(obj);
        if (jerr == json_tokener_continue)
            return cli__fail(ctx, CLI_EINPUT, _("%s is not valid JSON: it ends too early"), what);
        return cli__fail(ctx, CLI_EINPUT, _("%s is not valid JSON: %s at byte %zu"), what,
            json_tokener_error_desc(jerr), used);
    }
    for (size_t i = used; i < len; i++) {
        if (text[i] != ' ' && text[i] != '\n' && text[i] != '\r' && text[i] != '\t') {
            json_object_put(obj);
            return cli__fail(ctx, CLI_EINPUT,
                _("%s is not valid JSON: unexpected text after the value at byte %zu"), what, i);
        }
    }
    *out = obj;
    return CLI_OK;
}

cli_err cli__json_print(cli__ctx *ctx, json_object *obj)
{
    const char *s = json_object_to_json_string_ext(
        obj, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (s == NULL)
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory printing JSON"));
    if (printf("%s\n", s) < 0)
        return cli__fail(ctx, CLI_EINTERNAL, _("cannot write to stdout: %s"), strerror(errno));
    return CLI_OK;
}

const char *cli__json_str(json_object *obj, const char *key)
{
    json_object *v;
    if (obj == NULL || !json_object_object_get_ex(obj, key, &v)
        || !json_object_is_type(v, json_type_string))
        return NULL;
    return json_object_get_string(v);
}

cli_err cli__jadd(cli__ctx *ctx, json_object *o, const char *key, json_object *v)
{
    if (v == NULL || json_object_object_add(o, key, v) != 0) {
        json_object_put(v);
        return cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    }
    return CLI_OK;
}

cli_err cli__jadd_str(cli__ctx *ctx, json_object *o, const char *key, const char *value)
{
    return cli__jadd(ctx, o, key, json_object_new_string(value));
}

cli_err cli__jadd_u64(cli__ctx *ctx, json_object *o, const char *key, uint64_t value)
{
    return cli__jadd(ctx, o, key, json_object_new_uint64(value));
}

json_object *cli__result_new(cli__ctx *ctx)
{
    json_object *o = json_object_new_object();
    if (o == NULL)
        cli__fail(ctx, CLI_EINTERNAL, _("out of memory"));
    return o;
}

cli_err cli__result_print(cli__ctx *ctx, json_object *obj, const char *human)
{
    if (ctx->json)
        return cli__json_print(ctx, obj);
    if (printf("%s\n", human) < 0)
        return cli__fail(ctx, CLI_EINTERNAL, _("cannot write to stdout: %s"), strerror(errno));
    return CLI_OK;
}
