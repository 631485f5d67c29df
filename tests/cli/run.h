/*
 * run.h - run the built `patto` (PATTO_EXE) as a subprocess and capture its exit code, stdout
 * and stderr; temporary directories removed with everything in them.
 *
 * The environment of the child is built before fork() (the remote tests fork while a listener
 * thread runs, so the child only calls async-signal-safe functions before execve).
 */
#ifndef TESTS_CLI_RUN_H
#define TESTS_CLI_RUN_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef PATTO_EXE
#error "PATTO_EXE must name the patto executable"
#endif

extern char **environ;

typedef struct run_result {
    int code;  /* exit code, or -1 if killed by a signal or not run */
    char *out; /* stdout, NUL-terminated (owned) */
    char *err; /* stderr, NUL-terminated (owned) */
} run_result;

static inline void run_result_fini(run_result *r)
{
    free(r->out);
    free(r->err);
    memset(r, 0, sizeof *r);
}

static inline char *run__slurp(FILE *f)
{
    if (fflush(f) != 0 || fseek(f, 0, SEEK_END) != 0)
        return NULL;
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0)
        return NULL;
    char *s = malloc((size_t)n + 1);
    if (s == NULL)
        return NULL;
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = '\0';
    return s;
}

/*
 * Run patto with args (NULL-terminated, without argv[0]) in directory cwd (NULL: the test's).
 * env: NULL-terminated "KEY=VALUE" strings added to the environment, from which every PATTO_*
 * variable of the test's own environment is removed first. Returns 0 if the program ran.
 */
static inline int run_patto(
    run_result *r, const char *cwd, const char *const *env, const char *const *args)
{
    memset(r, 0, sizeof *r);
    r->code = -1;
    size_t nenv = 0, nargs = 0, nextra = 0;
    while (environ[nenv] != NULL)
        nenv++;
    while (env != NULL && env[nextra] != NULL)
        nextra++;
    while (args[nargs] != NULL)
        nargs++;
    char **envp = calloc(nenv + nextra + 2, sizeof *envp);
    char **argv = calloc(nargs + 2, sizeof *argv);
    FILE *out = tmpfile(), *err = tmpfile();
    int rc = -1;
    size_t k = 0, kenv = 0;
    if (envp == NULL || argv == NULL || out == NULL || err == NULL)
        goto done;
    for (size_t i = 0; i < nenv; i++)
        if (strncmp(environ[i], "PATTO_", 6) != 0)
            envp[k++] = environ[i];
    kenv = k;
    /* Under ASan a leak must not hide behind an expected exit code of 1. */
    if (getenv("ASAN_OPTIONS") == NULL && (envp[k++] = strdup("ASAN_OPTIONS=exitcode=99")) == NULL)
        goto done;
    /* Copies: execve takes non-const strings. */
    for (size_t i = 0; i < nextra; i++)
        if ((envp[k++] = strdup(env[i])) == NULL)
            goto done;
    if ((argv[0] = strdup(PATTO_EXE)) == NULL)
        goto done;
    for (size_t i = 0; i < nargs; i++)
        if ((argv[i + 1] = strdup(args[i])) == NULL)
            goto done;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0)
        goto done;
    if (pid == 0) {
        if ((cwd != NULL && chdir(cwd) != 0) || dup2(fileno(out), 1) < 0
            || dup2(fileno(err), 2) < 0)
            _exit(126);
        execve(PATTO_EXE, argv, envp);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            goto done;
    r->code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r->out = run__slurp(out);
    r->err = run__slurp(err);
    rc = r->out != NULL && r->err != NULL ? 0 : -1;
done:
    if (out != NULL)
        fclose(out);
    if (err != NULL)
        fclose(err);
    if (envp != NULL)
        for (size_t i = kenv; envp[i] != NULL; i++)
            free(envp[i]);
    if (argv != NULL)
        for (size_t i = 0; argv[i] != NULL; i++)
            free(argv[i]);
    free(envp);
    free(argv);
    return rc;
}

/* Print what a run produced (for a failing assertion's context). */
static inline void run_dump(const char *what, const run_result *r)
{
    fprintf(stderr, "--- %s: exit %d\n--- stdout:\n%s--- stderr:\n%s---\n", what, r->code,
        r->out != NULL ? r->out : "(none)", r->err != NULL ? r->err : "(none)");
}

static inline char *tmpdir_make(void)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    if (path == NULL)
        return NULL;
    snprintf(path, 4096, "%s/patto-cli-XXXXXX", base != NULL && *base ? base : "/tmp");
    if (mkdtemp(path) == NULL) {
        free(path);
        return NULL;
    }
    return path;
}

static inline int tmpdir__rm(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path) == 0 || errno == ENOENT ? 0 : -1;
    return unlink(path) == 0 || errno == ENOENT ? 0 : -1;
}

/* Remove a directory tree (it may hold directories of mode 0700 made by the tests). */
static inline void tmpdir_remove(char *path)
{
    if (path == NULL)
        return;
    nftw(path, tmpdir__rm, 16, FTW_DEPTH | FTW_PHYS);
    free(path);
}

/* Read a whole file (owned, NUL-terminated); NULL on failure. */
static inline char *slurp_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *s = run__slurp(f);
    if (s != NULL && len != NULL) {
        fseek(f, 0, SEEK_END);
        *len = (size_t)ftell(f);
    }
    fclose(f);
    return s;
}

static inline mode_t file_mode(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return (mode_t)-1;
    return st.st_mode & 07777;
}

#endif
