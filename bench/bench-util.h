/* SPDX-License-Identifier: MIT */
/* Shared helpers of every benchmark: clocks, medians, the BENCH line. */
#ifndef VMM_BENCH_UTIL_H
#define VMM_BENCH_UTIL_H

#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

#endif
