/* SPDX-License-Identifier: MIT */
/*
 * Graph lock benchmarks (ns per operation, median of repetitions, thread
 * CPU time), each beside comparators measured in the same run:
 *
 *   graph_rdlock_pair      vmm_graph_co_rdlock + vmm_graph_co_rdunlock in a
 *                          coroutine in an iothread, against
 *     qemu_shape_pair      QEMU's bdrv_graph_co_rdlock/rdunlock shape: the
 *                          per-context counter on its own cache line, a full
 *                          fence after each update, has_writer check, and
 *                          the unconditional aio_wait_kick (a fence and a
 *                          read of the waiter count) -- same calls, same TLS
 *                          context lookup;
 *     pthread_rwlock_pair  pthread_rwlock_rdlock + unlock (shared).
 *   graph_rdlock_pair_inline  the same lock and unlock as the block layer's
 *                          request path runs them (block_graph_co_rdlock_fast,
 *                          inlined into the caller: no call), against the
 *                          same two comparators.
 *   graph_rdlock_pair_2t   the same with readers in two iothreads at once,
 *                          against pthread_rwlock_pair_2t.
 *   graph_wrlock_pair      vmm_graph_wrlock + wrunlock with two idle
 *                          iothreads, against pthread_rwlock_wr_pair.
 *
 * A comment line also gives two empty out-of-line calls per iteration:
 * the floor under any pair of exported functions on the machine.
 *
 * VMM_BENCH_QUICK=1: a short single run (bench-smoke).
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "aio/aio-internal.h"
#include "block/block-int.h"
#include "block/graph-lock-int.h"
#include "../bench-util.h"
#include "vmmkit/block.h"

static long iters = 20000000;
static int reps = 9;

/* ---- The QEMU shape, written out ------------------------------------------ */

typedef struct QemuCtxCount {
    uint32_t reader_count;
} VMM_CACHE_ALIGNED QemuCtxCount;

static QemuCtxCount qemu_counts[4];
static int qemu_has_writer;
static unsigned qemu_num_waiters;
static __thread int qemu_ctx_index;

static VMM_NOINLINE QemuCtxCount *qemu_current(void)
{
    /* QEMU: qemu_get_current_aio_context() (a TLS read) -> ctx->bdrv_graph */
    return &qemu_counts[qemu_ctx_index];
}

static VMM_NOINLINE void qemu_aio_wait_kick(void)
{
    vk_smp_mb();
    if (vk_atomic_read(&qemu_num_waiters)) {
        abort();                        /* never in this benchmark */
    }
}

static VMM_NOINLINE void qemu_rdlock(void)
{
    QemuCtxCount *c = qemu_current();
    vk_atomic_set(&c->reader_count, vk_atomic_read(&c->reader_count) + 1);
    vk_smp_mb();
    if (vk_atomic_read(&qemu_has_writer)) {
        abort();
    }
}

static VMM_NOINLINE void qemu_rdunlock(void)
{
    QemuCtxCount *c = qemu_current();
    vk_atomic_store_release(&c->reader_count, vk_atomic_read(&c->reader_count) - 1);
    vk_smp_mb();
    qemu_aio_wait_kick();
}

/* Two empty out-of-line calls: what any exported lock+unlock pair pays
 * before doing anything. */
static VMM_NOINLINE void empty_call_a(void)
{
    vk_barrier();
}

static VMM_NOINLINE void empty_call_b(void)
{
    vk_barrier();
}

/* ---- Loops ---------------------------------------------------------------- */

typedef enum { L_GRAPH, L_GRAPH_INLINE, L_QEMU, L_RWLOCK, L_EMPTY_CALLS } LoopKind;

static pthread_rwlock_t rwl = PTHREAD_RWLOCK_INITIALIZER;

static double run_loop(LoopKind k, long n)
{
    double t0 = (double)bench_cpu_ns();
    switch (k) {
    case L_GRAPH:
        for (long i = 0; i < n; i++) {
            vmm_graph_co_rdlock();
            vmm_graph_co_rdunlock();
        }
        break;
    case L_GRAPH_INLINE:
        for (long i = 0; i < n; i++) {
            block_graph_co_rdlock_fast();
            block_graph_co_rdunlock_fast();
        }
        break;
    case L_EMPTY_CALLS:
        for (long i = 0; i < n; i++) {
            empty_call_a();
            empty_call_b();
        }
        break;
    case L_QEMU:
        for (long i = 0; i < n; i++) {
            qemu_rdlock();
            qemu_rdunlock();
        }
        break;
    case L_RWLOCK:
        for (long i = 0; i < n; i++) {
            pthread_rwlock_rdlock(&rwl);
            pthread_rwlock_unlock(&rwl);
        }
        break;
    }
    return ((double)bench_cpu_ns() - t0) / (double)n;
}

typedef struct Job {
    LoopKind kind;
    int ctx_index;
    double result[32];
    int done;
    pthread_barrier_t *barrier;
} Job;

static void job_entry(void *opaque)
{
    Job *j = opaque;
    qemu_ctx_index = j->ctx_index;
    run_loop(j->kind, iters / 10 + 1);              /* warm up */
    for (int r = 0; r < reps; r++) {
        j->result[r] = run_loop(j->kind, iters);
    }
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    vmm_aio_wait_kick();
}

/* Run @kind in coroutines in @nthreads iothreads at once; median ns/pair
 * of the first. */
static double measure(LoopKind kind, VmmAioContext **ctx, int nthreads)
{
    Job jobs[2];
    memset(jobs, 0, sizeof(jobs));
    for (int t = 0; t < nthreads; t++) {
        jobs[t].kind = kind;
        jobs[t].ctx_index = t;
        int err = 0;
        VmmCoroutine *co = vmm_coroutine_create(job_entry, &jobs[t], &err);
        if (!co) {
            fprintf(stderr, "coroutine: %d\n", err);
            exit(1);
        }
        vmm_aio_co_enter(ctx[t], co);
    }
    for (int t = 0; t < nthreads; t++) {
        VMM_AIO_WAIT_WHILE(NULL, !__atomic_load_n(&jobs[t].done, __ATOMIC_ACQUIRE));
    }
    return bench_median(jobs[0].result, reps);
}

static double measure_wrlock(int n)
{
    double v[32];
    for (int r = 0; r < reps; r++) {
        double t0 = (double)bench_cpu_ns();
        for (int i = 0; i < n; i++) {
            vmm_graph_wrlock();
            vmm_graph_wrunlock();
        }
        v[r] = ((double)bench_cpu_ns() - t0) / n;
    }
    return bench_median(v, reps);
}

static double measure_rw_wrlock(int n)
{
    double v[32];
    for (int r = 0; r < reps; r++) {
        double t0 = (double)bench_cpu_ns();
        for (int i = 0; i < n; i++) {
            pthread_rwlock_wrlock(&rwl);
            pthread_rwlock_unlock(&rwl);
        }
        v[r] = ((double)bench_cpu_ns() - t0) / n;
    }
    return bench_median(v, reps);
}

int main(void)
{
    const char *quick = getenv("VMM_BENCH_QUICK");
    if (quick && *quick && strcmp(quick, "0")) {
        iters = 20000;
        reps = 1;
    }
    int err = 0;
    VmmIOThread *t[2];
    VmmAioContext *ctx[2];
    for (int i = 0; i < 2; i++) {
        t[i] = vmm_iothread_new(i ? "bench-gl-1" : "bench-gl-0", NULL, &err);
        if (!t[i]) {
            fprintf(stderr, "iothread: %d\n", err);
            return 1;
        }
        ctx[i] = vmm_iothread_get_context(t[i]);
    }
    printf("# graph lock fences: %s\n",
           block_graph_uses_membarrier() ? "asymmetric (membarrier)" : "full fences");

    double ours = measure(L_GRAPH, ctx, 1);
    double qemu = measure(L_QEMU, ctx, 1);
    double rw = measure(L_RWLOCK, ctx, 1);
    bench_print("graph_rdlock_pair", ours, "ns", "qemu_shape_pair", qemu);
    bench_print("graph_rdlock_pair", ours, "ns", "pthread_rwlock_pair", rw);
    double inl = measure(L_GRAPH_INLINE, ctx, 1);
    bench_print("graph_rdlock_pair_inline", inl, "ns", "qemu_shape_pair", qemu);
    bench_print("graph_rdlock_pair_inline", inl, "ns", "pthread_rwlock_pair", rw);
    printf("# two empty out-of-line calls: %.2f ns per pair (floor of an exported pair)\n",
           measure(L_EMPTY_CALLS, ctx, 1));

    double ours2 = measure(L_GRAPH, ctx, 2);
    double qemu2 = measure(L_QEMU, ctx, 2);
    double rw2 = measure(L_RWLOCK, ctx, 2);
    bench_print("graph_rdlock_pair_2t", ours2, "ns", "qemu_shape_pair_2t", qemu2);
    bench_print("graph_rdlock_pair_2t", ours2, "ns", "pthread_rwlock_pair_2t", rw2);

    int wn = quick && *quick && strcmp(quick, "0") ? 10 : 2000;
    bench_print("graph_wrlock_pair", measure_wrlock(wn), "ns", "pthread_rwlock_wr_pair",
           measure_rw_wrlock(wn * 100));

    for (int i = 0; i < 2; i++) {
        vmm_iothread_destroy(t[i]);
    }
    return 0;
}
