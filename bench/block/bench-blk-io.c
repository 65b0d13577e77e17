/* SPDX-License-Identifier: MIT */
/*
 * Block I/O throughput, one core, against external tools run by this
 * program in the same run:
 *
 *   null_read_4k_qd{1,64}   4 KiB reads through a BlockBackend to the null
 *                           driver, against `qemu-img bench` on QEMU's
 *                           null-co driver (read-zeroes=off, -t none) at
 *                           the same depth;
 *   file_randread_4k_qd{1,32}  4 KiB random reads of a page-cached file
 *                           through raw-less file node with io_uring,
 *                           against fio (ioengine=io_uring) at the same
 *                           depth.
 *
 * Values are IOPS per CPU-second (user+system time of the process, or of
 * the child for the comparator), so co-tenant load on a shared machine
 * does not decide the ratio; the wall-clock IOPS follow as *_wall lines.
 * null_read_*: a new coroutine per request with @qd in flight (the shape of
 * qemu-img bench's blk_aio_preadv path); *_loop: @qd long-lived coroutines
 * each issuing its next request when its previous one completes (a
 * device queue handler's shape), also used for the file figures.  A comparator that is not installed is reported
 * and its line skipped.  VMM_BENCH_QUICK=1: tiny runs (bench-smoke).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmmkit/block.h"

static bool quick;

static double tv_s(struct timeval tv)
{
    return tv.tv_sec + tv.tv_usec / 1e6;
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return tv_s(ru.ru_utime) + tv_s(ru.ru_stime);
}

static void report(const char *name, double value, const char *vs, double vs_value)
{
    printf("BENCH name=%s value=%.0f unit=IOPS vs=%s vs_value=%.0f ratio=%.3f\n", name, value,
           vs, vs_value, vs_value > 0 ? value / vs_value : 0.0);
    fflush(stdout);
}

/* Run @cmd (sh -c), capture stdout into @out; CPU seconds of the child. */
static double run_child(const char *cmd, char *out, size_t outlen, double *wall)
{
    struct rusage before, after;
    getrusage(RUSAGE_CHILDREN, &before);
    double w0 = wall_s();
    FILE *p = popen(cmd, "r");
    if (!p) {
        return -1;
    }
    size_t n = fread(out, 1, outlen - 1, p);
    out[n] = '\0';
    int st = pclose(p);
    *wall = wall_s() - w0;
    getrusage(RUSAGE_CHILDREN, &after);
    if (st != 0) {
        fprintf(stderr, "# '%s' failed (status %d)\n", cmd, st);
        return -1;
    }
    return tv_s(after.ru_utime) - tv_s(before.ru_utime) + tv_s(after.ru_stime) -
           tv_s(before.ru_stime);
}

/* ---- Our side: QD coroutines over a BlockBackend -------------------------- */

typedef struct Load {
    VmmBlockBackend *blk;
    long per_worker;
    int64_t span;               /* offsets in [0, span) */
    bool random;
    int running;
    int errors;
} Load;

typedef struct Worker {
    Load *load;
    unsigned seed;
    long start;
} Worker;

static void worker_entry(void *opaque)
{
    Worker *w = opaque;
    Load *l = w->load;
    void *buf = NULL;
    if (posix_memalign(&buf, 4096, 4096)) {
        abort();
    }
    struct iovec iov = { buf, 4096 };
    int64_t blocks = l->span / 4096;
    for (long i = 0; i < l->per_worker; i++) {
        int64_t blk = l->random ? (int64_t)(rand_r(&w->seed) % blocks)
                                : (w->start + i) % blocks;
        if (vmm_blk_co_preadv(l->blk, blk * 4096, 4096, &iov, 1, 0) < 0) {
            l->errors++;
            break;
        }
    }
    free(buf);
    l->running--;
}

/* IOPS per CPU-second (and wall IOPS in *wall_iops). */
static double run_ours(VmmBlockBackend *blk, int qd, long total, int64_t span, bool random,
                       double *wall_iops)
{
    Load l = { .blk = blk, .per_worker = total / qd, .span = span, .random = random };
    Worker *w = calloc((size_t)qd, sizeof(*w));
    double c0 = self_cpu_s(), w0 = wall_s();
    l.running = qd;
    for (int i = 0; i < qd; i++) {
        w[i].load = &l;
        w[i].seed = 42 + i;
        w[i].start = i * l.per_worker;
        int err = 0;
        VmmCoroutine *co = vmm_coroutine_create(worker_entry, &w[i], &err);
        if (!co) {
            abort();
        }
        vmm_aio_co_enter(vmm_aio_context_main(), co);
    }
    /* The main loop runs the workers like an iothread runs a device's:
     * plain polling, no VMM_AIO_WAIT_WHILE (a waiter makes every request's
     * completion kick the main loop, which is the drain path, not I/O). */
    while (l.running > 0) {
        vmm_aio_poll(vmm_aio_context_main(), true);
    }
    double cpu = self_cpu_s() - c0, wall = wall_s() - w0;
    free(w);
    if (l.errors) {
        fprintf(stderr, "# I/O errors in the benchmark\n");
        exit(1);
    }
    long done = l.per_worker * qd;
    *wall_iops = done / wall;
    return done / cpu;
}

/* Coroutine per request, as qemu-img bench's blk_aio_preadv path does:
 * the main loop keeps @qd requests in flight, each in a new coroutine. */
typedef struct OneReq {
    VmmBlockBackend *blk;
    int64_t offset;
    void *buf;
    int *inflight;
    int *errors;
} OneReq;

static void one_req_entry(void *opaque)
{
    OneReq *r = opaque;
    struct iovec iov = { r->buf, 4096 };
    if (vmm_blk_co_preadv(r->blk, r->offset, 4096, &iov, 1, 0) < 0) {
        (*r->errors)++;
    }
    (*r->inflight)--;
}

static double run_per_request(VmmBlockBackend *blk, int qd, long total, int64_t span,
                              double *wall_iops)
{
    OneReq *reqs = calloc((size_t)qd, sizeof(*reqs));
    char *bufs = aligned_alloc(4096, (size_t)qd * 4096);
    int inflight = 0, errors = 0;
    double c0 = self_cpu_s(), w0 = wall_s();
    long issued = 0;
    int slot = 0;
    while (issued < total || inflight > 0) {
        while (issued < total && inflight < qd) {
            OneReq *r = &reqs[slot];
            *r = (OneReq){ blk, (issued * 4096) % span, bufs + (size_t)slot * 4096,
                           &inflight, &errors };
            slot = (slot + 1) % qd;
            int err = 0;
            VmmCoroutine *co = vmm_coroutine_create(one_req_entry, r, &err);
            if (!co) {
                abort();
            }
            inflight++;
            issued++;
            vmm_coroutine_enter(co);
        }
        if (inflight > 0) {
            vmm_aio_poll(vmm_aio_context_main(), true);
        }
    }
    double cpu = self_cpu_s() - c0, wall = wall_s() - w0;
    free(reqs);
    free(bufs);
    if (errors) {
        fprintf(stderr, "# I/O errors in the benchmark\n");
        exit(1);
    }
    *wall_iops = total / wall;
    return total / cpu;
}

/* ---- Null driver vs qemu-img bench ------------------------------------------ */

static void bench_null(int qd)
{
    long total = quick ? 20000 : 2000000;
    GError *err = NULL;
    VmmBlockBackend *blk = vmm_blk_new_open("driver=null,size=1G", 0, &err);
    if (!blk) {
        fprintf(stderr, "%s\n", err->message);
        exit(1);
    }
    double ours_wall, loop_wall;
    double ours = run_per_request(blk, qd, total, 1ll << 30, &ours_wall);
    double loop = run_ours(blk, qd, total, 1ll << 30, false, &loop_wall);
    vmm_blk_unref(blk);

    char cmd[512], out[4096];
    snprintf(cmd, sizeof(cmd),
             "qemu-img bench -c %ld -d %d -s 4096 -t none --image-opts "
             "driver=null-co,read-zeroes=off 2>&1", total, qd);
    double wall = 0;
    double cpu = run_child(cmd, out, sizeof(out), &wall);
    char name[64], vs[64];
    snprintf(name, sizeof(name), "null_read_4k_qd%d", qd);
    if (cpu <= 0) {
        printf("# qemu-img bench unavailable (Debian package qemu-utils); ours: %.0f IOPS "
               "per CPU-s\n", ours);
        return;
    }
    snprintf(vs, sizeof(vs), "qemu_img_bench_null_co_qd%d", qd);
    report(name, ours, vs, total / cpu);
    snprintf(name, sizeof(name), "null_read_4k_qd%d_wall", qd);
    snprintf(vs, sizeof(vs), "qemu_img_bench_null_co_qd%d_wall", qd);
    report(name, ours_wall, vs, total / wall);
    /* Long-lived coroutines looping over requests (a device's queue
     * handler), the cheaper pattern our API allows. */
    snprintf(name, sizeof(name), "null_read_4k_qd%d_loop", qd);
    snprintf(vs, sizeof(vs), "qemu_img_bench_null_co_qd%d", qd);
    report(name, loop, vs, total / cpu);
    (void)loop_wall;
}

/* ---- File with io_uring vs fio ------------------------------------------------ */

static double json_number(const char *json, const char *section, const char *key)
{
    const char *s = strstr(json, section);
    if (!s) {
        return -1;
    }
    char pat[64];
    snprintf(pat, sizeof(pat), "\"%s\" : ", key);
    const char *k = strstr(s, pat);
    return k ? atof(k + strlen(pat)) : -1;
}

static void bench_file(const char *path, int64_t size, int qd)
{
    long total = quick ? 20000 : 600000;
    GError *err = NULL;
    char opts[512];
    snprintf(opts, sizeof(opts), "driver=file,aio=io_uring,filename=%s", path);
    VmmBlockBackend *blk = vmm_blk_new_open(opts, 0, &err);
    if (!blk) {
        printf("# file benchmark skipped: %s\n", err->message);
        g_error_free(err);
        return;
    }
    double ours_wall;
    double ours = run_ours(blk, qd, total, size, true, &ours_wall);
    vmm_blk_unref(blk);

    static char out[1 << 16];
    char cmd[768];
    snprintf(cmd, sizeof(cmd),
             "fio --name=vmmkit --filename=%s --ioengine=io_uring --rw=randread --bs=4k "
             "--iodepth=%d --direct=0 --invalidate=0 --size=%lld --io_size=%lld --norandommap "
             "--randrepeat=0 --output-format=json 2>/dev/null", path, qd, (long long)size,
             (long long)total * 4096);
    double wall = 0;
    double cpu = run_child(cmd, out, sizeof(out), &wall);
    char name[64], vs[64];
    snprintf(name, sizeof(name), "file_randread_4k_qd%d", qd);
    double iops = json_number(out, "\"read\"", "iops");
    double usr = json_number(out, "\"usr_cpu\"", "usr_cpu");
    (void)usr;
    if (cpu <= 0 || iops <= 0) {
        printf("# fio unavailable or failed (Debian package fio); ours: %.0f IOPS per CPU-s\n",
               ours);
        return;
    }
    snprintf(vs, sizeof(vs), "fio_io_uring_qd%d", qd);
    report(name, ours, vs, total / cpu);
    snprintf(name, sizeof(name), "file_randread_4k_qd%d_wall", qd);
    snprintf(vs, sizeof(vs), "fio_io_uring_qd%d_wall", qd);
    report(name, ours_wall, vs, iops);
}

/* argv[1]: "null" or "file" runs only that half. */
int main(int argc, char **argv)
{
    const char *only = argc > 1 ? argv[1] : "";
    const char *q = getenv("VMM_BENCH_QUICK");
    quick = q && *q && strcmp(q, "0");
    vmm_aio_poll(vmm_aio_context_main(), false);     /* this thread is the main loop */

    if (strcmp(only, "file")) {
        bench_null(1);
        bench_null(64);
    }
    if (!strcmp(only, "null")) {
        return 0;
    }

    int64_t size = quick ? (4 << 20) : (256 << 20);
    char *path = g_strdup_printf("%s/vmmkit-bench-XXXXXX", g_get_tmp_dir());
    int fd = mkstemp(path);
    if (fd < 0) {
        perror("mkstemp");
        return 1;
    }
    char *chunk = g_malloc(1 << 20);
    for (int64_t off = 0; off < size; off += 1 << 20) {
        memset(chunk, (int)(off >> 20) + 1, 1 << 20);
        if (pwrite(fd, chunk, 1 << 20, off) != 1 << 20) {
            perror("pwrite");
            return 1;
        }
    }
    g_free(chunk);
    close(fd);
    bench_file(path, size, 1);
    bench_file(path, size, 32);
    unlink(path);
    g_free(path);
    return 0;
}
