/* SPDX-License-Identifier: MIT */
/*
 * BH schedule + dispatch cost, ns per callback, against GLib's g_idle_add
 * measured in the same process; plus the cost of an empty non-blocking
 * poll against an empty GLib iteration and a bare ppoll(0) system call.
 * Each figure is the median of REPS repetitions.
 */
#include <glib.h>
#include <poll.h>

#include "../bench-util.h"
#include "vmmkit/aio.h"

#define BATCH 64
#define REPS 9

static long cb_count;

static void bh_cb(void *opaque)
{
    (void)opaque;
    cb_count++;
}

static gboolean idle_cb(gpointer opaque)
{
    (void)opaque;
    cb_count++;
    return G_SOURCE_REMOVE;
}

/* 64 pre-allocated BHs scheduled, then one non-blocking poll. */
static double run_bh_batch(VmmAioContext *ctx, VmmBH **bhs, long rounds)
{
    int64_t t0 = bench_now_ns();
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < BATCH; i++) {
            vmm_bh_schedule(bhs[i]);
        }
        vmm_aio_poll(ctx, false);
    }
    return (double)(bench_now_ns() - t0) / (rounds * BATCH);
}

/* 64 one-shot BHs (allocated and freed each time), then one poll. */
static double run_oneshot_batch(VmmAioContext *ctx, long rounds)
{
    int64_t t0 = bench_now_ns();
    for (long r = 0; r < rounds; r++) {
        for (int i = 0; i < BATCH; i++) {
            vmm_bh_schedule_oneshot(ctx, bh_cb, NULL, "bench");
        }
        vmm_aio_poll(ctx, false);
    }
    return (double)(bench_now_ns() - t0) / (rounds * BATCH);
}

static double run_bh_single(VmmAioContext *ctx, VmmBH *bh, long rounds)
{
    int64_t t0 = bench_now_ns();
    for (long r = 0; r < rounds; r++) {
        vmm_bh_schedule(bh);
        vmm_aio_poll(ctx, false);
    }
    return (double)(bench_now_ns() - t0) / rounds;
}

static double run_poll_idle(VmmAioContext *ctx, long rounds)
{
    int64_t t0 = bench_now_ns();
    for (long r = 0; r < rounds; r++) {
        vmm_aio_poll(ctx, false);
    }
    return (double)(bench_now_ns() - t0) / rounds;
}

/* GLib: g_idle_add 64 callbacks, then iterate until all ran. */
static double run_idle_batch(long rounds)
{
    GMainContext *g = g_main_context_default();
    int64_t t0 = bench_now_ns();
    for (long r = 0; r < rounds; r++) {
        long want = cb_count + BATCH;
        for (int i = 0; i < BATCH; i++) {
            g_idle_add(idle_cb, NULL);
        }
        while (cb_count < want) {
            g_main_context_iteration(g, FALSE);
        }
    }
    return (double)(bench_now_ns() - t0) / (rounds * BATCH);
}

static double run_idle_single(long rounds)
{
    GMainContext *g = g_main_context_default();
    int64_t t0 = bench_now_ns();
    for (long r = 0; r < rounds; r++) {
        long want = cb_count + 1;
        g_idle_add(idle_cb, NULL);
        while (cb_count < want) {
            g_main_context_iteration(g, FALSE);
        }
    }
    return (double)(bench_now_ns() - t0) / rounds;
}

static double run_glib_idle_iteration(long rounds)
{
    GMainContext *g = g_main_context_default();
    int64_t t0 = bench_now_ns();
    for (long r = 0; r < rounds; r++) {
        g_main_context_iteration(g, FALSE);
    }
    return (double)(bench_now_ns() - t0) / rounds;
}

static double run_ppoll0(long rounds)
{
    struct timespec ts = { 0, 0 };
    int64_t t0 = bench_now_ns();
    for (long r = 0; r < rounds; r++) {
        ppoll(NULL, 0, &ts, NULL);
    }
    return (double)(bench_now_ns() - t0) / rounds;
}

int main(void)
{
    long rounds = bench_quick() ? 200 : 40000;
    /* The main context, polled by its home thread (the main loop), as
     * an application's main loop would run it. */
    VmmAioContext *ctx = vmm_aio_context_main();
    VmmBH *bhs[BATCH];
    double a[REPS], b[REPS], c[REPS], d[REPS], e[REPS], f[REPS], g[REPS], h[REPS];

    if (!ctx) {
        fprintf(stderr, "cannot create a context\n");
        return 1;
    }
    bench_pin(0);
    for (int i = 0; i < BATCH; i++) {
        bhs[i] = vmm_bh_new(ctx, bh_cb, NULL, "bench");
    }
    /* Warm up both sides. */
    run_bh_batch(ctx, bhs, rounds / 10 + 1);
    run_oneshot_batch(ctx, rounds / 10 + 1);
    run_idle_batch(rounds / 10 + 1);

    for (int r = 0; r < REPS; r++) {
        a[r] = run_bh_batch(ctx, bhs, rounds);
        b[r] = run_oneshot_batch(ctx, rounds);
        c[r] = run_idle_batch(rounds / 4 + 1);
        d[r] = run_bh_single(ctx, bhs[0], rounds * 8);
        e[r] = run_idle_single(rounds / 4 + 1);
        f[r] = run_poll_idle(ctx, rounds * 8);
        g[r] = run_glib_idle_iteration(rounds / 4 + 1);
        h[r] = run_ppoll0(rounds / 4 + 1);
    }
    double bh_batch = bench_median(a, REPS), oneshot = bench_median(b, REPS);
    double idle_batch = bench_median(c, REPS), bh_single = bench_median(d, REPS);
    double idle_single = bench_median(e, REPS), poll_idle = bench_median(f, REPS);
    double glib_iter = bench_median(g, REPS), ppoll0 = bench_median(h, REPS);

    bench_print("bh-schedule-dispatch-batch64", bh_batch, "ns", "g_idle_add-batch64", idle_batch);
    bench_print("bh-oneshot-batch64", oneshot, "ns", "g_idle_add-batch64", idle_batch);
    bench_print("bh-schedule-poll-single", bh_single, "ns", "g_idle_add-iterate-single",
                idle_single);
    bench_print("aio-poll-nonblocking-idle", poll_idle, "ns", "g_main_context_iteration-idle",
                glib_iter);
    bench_print("aio-poll-nonblocking-idle", poll_idle, "ns", "ppoll0-syscall", ppoll0);

    for (int i = 0; i < BATCH; i++) {
        vmm_bh_delete(bhs[i]);
    }
    vmm_aio_poll(ctx, false);
    return 0;
}
