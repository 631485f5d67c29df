/* A fresh temporary directory per test, removed afterwards with everything in it. */
#ifndef TESTS_NODE_TMPDIR_H
#define TESTS_NODE_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static inline char *tmpdir_new(void)
{
    const char *base = getenv("TMPDIR");
    char *path = malloc(4096);
    if (path == NULL)
        return NULL;
    snprintf(path, 4096, "%s/patto-test-XXXXXX", base && *base ? base : "/tmp");
    if (mkdtemp(path) == NULL) {
        free(path);
        return NULL;
    }
    return path;
}

/* Removes the files of a flat directory, then the directory. */
static inline void tmpdir_free(char *path)
{
    if (path == NULL)
        return;
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char f[4400];
            snprintf(f, sizeof(f), "%s/%s", path, e->d_name);
            unlink(f);
        }
        closedir(d);
    }
    rmdir(path);
    free(path);
}

static inline int write_file(const char *dir, const char *name, const char *text)
{
    char f[4400];
    snprintf(f, sizeof(f), "%s/%s", dir, name);
    FILE *fp = fopen(f, "w");
    if (fp == NULL)
        return -1;
    fputs(text, fp);
    return fclose(fp);
}

#endif
