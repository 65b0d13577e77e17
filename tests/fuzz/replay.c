/* SPDX-License-Identifier: MIT */
/*
 * Replays a fuzz target's corpus in the normal build (no libFuzzer): every
 * file under the directories (or the files) named on the command line is
 * fed to LLVMFuzzerTestOneInput once.  A crash or sanitizer report fails
 * the test; the exit status is 0 otherwise.
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return -1;
            }
            buf = nb;
        }
        size_t r = fread(buf + len, 1, cap - len, f);
        if (r == 0) {
            break;
        }
        len += r;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, len);
    free(buf);
    return 0;
}

static int cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int run_dir(const char *dir, int *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        perror(dir);
        return -1;
    }
    char **names = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') {
            continue;
        }
        char **nn = realloc(names, (n + 1) * sizeof(*names));
        if (!nn) {
            break;
        }
        names = nn;
        size_t l = strlen(dir) + strlen(de->d_name) + 2;
        names[n] = malloc(l);
        snprintf(names[n], l, "%s/%s", dir, de->d_name);
        n++;
    }
    closedir(d);
    qsort(names, n, sizeof(*names), cmp);
    int ret = 0;
    for (size_t i = 0; i < n; i++) {
        if (run_file(names[i]) < 0) {
            ret = -1;
        }
        (*count)++;
        free(names[i]);
    }
    free(names);
    return ret;
}

int main(int argc, char **argv)
{
    int count = 0, ret = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            perror(argv[i]);
            return 1;
        }
        if (S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) < 0 :
                                  (count++, run_file(argv[i]) < 0)) {
            ret = 1;
        }
    }
    printf("replayed %d inputs\n", count);
    return count == 0 ? 1 : ret;
}
