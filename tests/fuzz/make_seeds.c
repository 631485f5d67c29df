/*
 * make_seeds.c - writes the fuzz seed corpora from proto/vectors.txt: every value of every
 * vector (as bytes when it is hex, as text otherwise), the unpadded form of padded values
 * (delta bodies pad to 256 bytes, grant plaintexts to 512), and the fields of access-grant
 * plaintexts after their fixed head (what the access_grant target appends to that head), into
 * OUTDIR/<target>/ for each target named.
 *
 * usage: fuzz-make-seeds VECTORS OUTDIR TARGET...
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tdecode.h"
#include "tutil.h"

static int write_seed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return -1;
    if (n > 0 && fwrite(p, 1, n, f) != n) {
        fclose(f);
        return -1;
    }
    return fclose(f);
}

static int mkdir_p(const char *d)
{
    return mkdir(d, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 4 || sodium_init() < 0)
        return 2;
    tu_vectors vs;
    if (!tu_vectors_load(argv[1], &vs)) {
        fprintf(stderr, "cannot read %s\n", argv[1]);
        return 1;
    }
    if (mkdir_p(argv[2]) != 0)
        return 1;
    uint8_t head[32];
    size_t head_len = tdec_access_grant_head(head);
    for (int t = 3; t < argc; t++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/%s", argv[2], argv[t]);
        if (mkdir_p(dir) != 0)
            return 1;
        /* hostile claims (ARCHITECTURE.md house rule 2): the replay runs with -malloc_limit_mb, so
         * a decoder that let msgpack-c allocate what these claim would fail there */
        static const uint8_t claims[][8] = {
            { 0xdd, 0xff, 0xff, 0xff, 0xff, 0, 0, 0 },          /* array32: 4 G elements */
            { 0x93, 0x02, 0x0e, 0xdd, 0x7f, 0xff, 0xff, 0xff }, /* HEADERS of 2 G */
            { 0x93, 0x02, 0x0f, 0xdc, 0xff, 0xff, 0x92, 0xc4 }, /* BODIES of 65535 */
            { 0x96, 0x02, 0x14, 0xdd, 0x0f, 0xff, 0xff, 0xff }, /* SCOPE origins of 268 M */
        };
        for (size_t c = 0; c < sizeof claims / sizeof claims[0]; c++) {
            char name[64];
            snprintf(name, sizeof name, "hostile-claim-%zu", c);
            if (write_seed(dir, name, claims[c], sizeof claims[c]) != 0)
                return 1;
        }
        int k = 0;
        for (size_t i = 0; i < vs.n; i++)
            for (size_t j = 0; j < vs.v[i].nkv; j++) {
                char name[512];
                const char *val = vs.v[i].kv[j].value;
                size_t n;
                uint8_t *p = tu_unhex(val, &n);
                snprintf(name, sizeof name, "%03d-%s-%s", k++, vs.v[i].name, vs.v[i].kv[j].key);
                if (p == NULL) {
                    if (write_seed(dir, name, (const uint8_t *)val, strlen(val)) != 0)
                        return 1;
                    continue;
                }
                if (write_seed(dir, name, p, n) != 0)
                    return 1;
                static const size_t blocks[2] = { 256, 512 };
                for (int b = 0; b < 2; b++) {
                    size_t un;
                    if (n == 0 || n % blocks[b] != 0 || sodium_unpad(&un, p, n, blocks[b]) != 0)
                        continue;
                    char uname[600];
                    snprintf(uname, sizeof uname, "%s-unpadded%zu", name, blocks[b]);
                    if (write_seed(dir, uname, p, un) != 0)
                        return 1;
                    if (un > head_len && memcmp(p, head, head_len) == 0) {
                        snprintf(uname, sizeof uname, "%s-entry-fields", name);
                        if (write_seed(dir, uname, p + head_len, un - head_len) != 0)
                            return 1;
                    }
                }
                free(p);
            }
    }
    tu_vectors_free(&vs);
    tdec_cleanup();
    return 0;
}
