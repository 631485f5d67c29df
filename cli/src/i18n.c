/*
 * i18n.c - the language of patto's messages (cli/README.md, "Language").
 *
 * setlocale(LC_ALL, "") takes the locale from LC_ALL, LC_MESSAGES and LANG; gettext then picks
 * the catalogue from LANGUAGE or the LC_MESSAGES locale, except in the "C" locale, where it
 * ignores LANGUAGE. A machine where the Italian locale is not generated (Debian has C.UTF-8
 * only, until locales is installed and it_IT.UTF-8 generated) makes setlocale fail and would
 * leave everything in English: then patto takes C.UTF-8 (which glibc always has, and where
 * gettext honours LANGUAGE) and, when the locale asked for is Italian and LANGUAGE is not set,
 * sets LANGUAGE=it. Numbers keep the "C" LC_NUMERIC (a point before decimals) in any locale.
 */
#include "internal.h"

#include <limits.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef PATTO_LOCALEDIR
#error "PATTO_LOCALEDIR must be defined by the build (the installed share/locale)"
#endif

/* The locale asked for messages: the first of LC_ALL, LC_MESSAGES, LANG that is set. */
static const char *asked(void)
{
    const char *names[] = { "LC_ALL", "LC_MESSAGES", "LANG" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        const char *v = getenv(names[i]);
        if (v != NULL && v[0] != '\0')
            return v;
    }
    return "";
}

/* Does a locale name ("it", "it_IT.UTF-8", "it_CH@euro") name Italian? */
static bool italian(const char *name)
{
    return name[0] == 'i' && name[1] == 't'
        && (name[2] == '\0' || name[2] == '_' || name[2] == '.' || name[2] == '@');
}

/* Does dir hold patto's catalogue? (Italian is the only one.) */
static bool has_catalogue(const char *dir)
{
    char mo[PATH_MAX];
    int w = snprintf(mo, sizeof mo, "%s/it/LC_MESSAGES/%s.mo", dir, CLI__DOMAIN);
    return w > 0 && (size_t)w < sizeof mo && access(mo, R_OK) == 0;
}

/* Where the catalogues are: beside the executable (<bin>/../share/locale installed,
 * <build>/cli/../locale in the build tree), else the compiled-in install prefix's. */
static void bind_catalogues(void)
{
    static char dir[PATH_MAX];
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash != NULL) {
            *slash = '\0';
            const char *rel[] = { "../share/locale", "../locale" };
            for (size_t i = 0; i < sizeof rel / sizeof rel[0]; i++) {
                int w = snprintf(dir, sizeof dir, "%s/%s", exe, rel[i]);
                if (w > 0 && (size_t)w < sizeof dir && has_catalogue(dir)) {
                    bindtextdomain(CLI__DOMAIN, dir);
                    return;
                }
            }
        }
    }
    bindtextdomain(CLI__DOMAIN, PATTO_LOCALEDIR);
}

void cli__i18n_init(void)
{
    if (setlocale(LC_ALL, "") == NULL) {
        /* A locale that is not there (it_IT.UTF-8 not generated): C.UTF-8, and Italian by
         * LANGUAGE when that was asked for. */
        const char *lang = getenv("LANGUAGE");
        bool want_it = italian(asked());
        if (setlocale(LC_ALL, "C.UTF-8") != NULL && want_it && (lang == NULL || lang[0] == '\0'))
            setenv("LANGUAGE", "it", 1);
    }
    setlocale(LC_NUMERIC, "C");
    bind_catalogues();
}
