/* SPDX-License-Identifier: MIT */
/* Shared helpers of every benchmark: clocks, medians, the BENCH line. */
#ifndef VMM_BENCH_UTIL_H
#define VMM_BENCH_UTIL_H

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

static inline int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* CPU time of the calling thread: immune to time slices lost to other
 * processes on a shared machine. */
static inline int64_t bench_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int bench_quick(void)
{
    const char *e = getenv("VMM_BENCH_QUICK");
    return e && *e && *e != '0';
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median of @n samples (sorts them). */
static inline double bench_median(double *v, int n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static inline void bench_print(const char *name, double value, const char *unit,
                               const char *vs, double vs_value)
{
    printf("BENCH name=%s value=%.2f unit=%s vs=%s vs_value=%.2f ratio=%.4f\n",
           name, value, unit, vs, vs_value, vs_value > 0 ? value / vs_value : 0.0);
    fflush(stdout);
}

/* Pin the calling thread to @cpu (ignored when it fails). */
static inline void bench_pin(int cpu)
{
    cpu_set_t set;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 2) {
        return;
    }
    CPU_ZERO(&set);
    CPU_SET(cpu % n, &set);
    pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

/*
 * A VMM's resident memory from /proc/@pid/smaps, in KiB: @total, @beyond
 * (outside guest RAM: mappings named like the RAM memfd "vmmkit-ram", or at
 * least @ram_bytes large, are guest RAM) and @anon (the anonymous part of
 * @beyond: no page-cache pages of shared libraries).  VMM_BENCH_VERBOSE=1
 * names every mapping outside guest RAM that holds 128 KiB or more.
 * Returns 0, or -1 when smaps cannot be read.
 */
static inline int bench_smaps_rss(pid_t pid, unsigned long ram_bytes, long *total,
                                  long *beyond, long *anon)
{
    char path[64], line[512], head[512] = "";
    snprintf(path, sizeof(path), "/proc/%d/smaps", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) {
        return -1;
    }
    int guest = 0, verbose = getenv("VMM_BENCH_VERBOSE") != NULL;
    *total = *beyond = *anon = 0;
    while (fgets(line, sizeof(line), f)) {
        unsigned long lo, hi;
        long kb;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, ' ')) {
            guest = strstr(line, "vmmkit-ram") || (hi - lo) >= ram_bytes;
            snprintf(head, sizeof(head), "%s", line);
        } else if (sscanf(line, "Rss: %ld kB", &kb) == 1) {
            *total += kb;
            if (!guest) {
                *beyond += kb;
                if (verbose && kb >= 128) {
                    fprintf(stderr, "# rss %6ld KiB %s", kb, head);
                }
            }
        } else if (sscanf(line, "Anonymous: %ld kB", &kb) == 1 && !guest) {
            *anon += kb;
        }
    }
    fclose(f);
    return 0;
}

#endif
